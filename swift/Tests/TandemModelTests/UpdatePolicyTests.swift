import XCTest
@testable import TandemModel

final class UpdatePolicyTests: XCTestCase {
    func testHoldoutIsTheLatestRowsOfEachClassAndOrderInterleaves() {
        let y = Targets.classes(Array(repeating: "a", count: 6) + Array(repeating: "b", count: 3) + Array(repeating: "c", count: 4))
        var policy = UpdatePolicy()
        policy.holdoutEvery = 3
        XCTAssertEqual(UpdatePolicyRunner.holdoutRows(y, policy), [4, 5, 8, 11, 12])
        XCTAssertEqual(UpdatePolicyRunner.holdoutRows(y[Array(0..<8)], policy), [])  // "b" has 2: no early stopping
        XCTAssertEqual(UpdatePolicyRunner.interleave(.classes(["b", "a", "a", "b", "c"])), [1, 0, 4, 2, 3])
        XCTAssertEqual(UpdatePolicyRunner.interleave(.values([3, 1, 2])), [0, 1, 2])
        XCTAssertEqual(UpdatePolicyRunner.holdoutRows(.values([1, 2, 3, 4, 5, 6, 7]), policy), [4, 5, 6])
    }

    private func replay(_ name: String, model: String) throws -> (PolicyTrace, PolicyOutcome<Int>) {
        let trace = try PolicyTrace.load(Data(contentsOf: try fixtureURL(name)))
        let base = try InterpretedModel(contentsOf: try fixtureURL(model))
        let outcome = try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy,
                                                         engine: GoldenTraceEngine(trace: trace, base: base))
        return (trace, outcome)
    }

    func testClassifierTraceReplaysToTheGoldenEpochs() throws {
        let (trace, outcome) = try replay("classifier_policy.json", model: "classifier.mlmodel")
        XCTAssertEqual(outcome.order, trace.order)
        XCTAssertEqual(outcome.holdout, trace.holdout)
        XCTAssertEqual(outcome.epochs, trace.epochs)
        XCTAssertGreaterThan(outcome.epochs, 0)
        XCTAssertEqual(outcome.holdoutLosses.count, trace.holdoutLosses.count, "cancelled at the same epoch")
        XCTAssertEqual(outcome.decisions.last?.cancel, true)
        XCTAssertEqual(outcome.holdoutLosses[0], trace.holdoutLosses[0], accuracy: 1e-12, "base loss by the interpreter")
    }

    func testRegressorTraceReplaysToTheGoldenEpochs() throws {
        let (trace, outcome) = try replay("regressor_policy.json", model: "regressor.mlmodel")
        XCTAssertEqual(outcome.holdout, trace.holdout)
        XCTAssertEqual(outcome.epochs, trace.epochs)
        XCTAssertEqual(outcome.holdoutLosses.count, trace.holdoutLosses.count)
        XCTAssertEqual(outcome.holdoutLosses[0], trace.holdoutLosses[0], accuracy: 1e-12)
    }

    func testATamperedTraceIsCaught() throws {
        let golden = try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy.json")))
        let best = golden.epochs
        // From the best epoch on everything looks bad: the policy picks the one before, cancels earlier.
        var worse = golden
        for e in best..<golden.holdoutLosses.count { worse.holdoutLosses[e] = 10 }
        let outcome = try UpdatePolicyRunner.personalize(worse.data, policy: worse.policy, engine: GoldenTraceEngine(trace: worse))
        XCTAssertEqual(outcome.epochs, best - 1)
        XCTAssertLessThan(outcome.holdoutLosses.count, golden.holdoutLosses.count)
        // A later epoch now looks best: the policy would run past the end of the recorded trace.
        var better = golden
        better.holdoutLosses[best + 1] = golden.holdoutLosses[best] - 0.01
        XCTAssertThrowsError(try UpdatePolicyRunner.personalize(better.data, policy: better.policy,
                                                                engine: GoldenTraceEngine(trace: better))) { error in
            XCTAssertEqual(error as? TraceReplayError, .traceEnds(epoch: golden.holdoutLosses.count))
        }
    }

    func testAFileWithoutATraceIsRefusedInOneLine() {
        XCTAssertThrowsError(try PolicyTrace.load(Data("{\"format\": \"tandem-golden/v1\"}".utf8))) { error in
            XCTAssertEqual(error as? TraceReplayError, .noTrace("no 'policy'"))
        }
        XCTAssertThrowsError(try PolicyTrace.load(Data("[1,".utf8))) { error in
            XCTAssertEqual("\(error)", "not a golden update-policy trace (not JSON): pass a release's golden_vectors.json")
        }
    }

    /// Scripted losses per epoch; throws UpdateDiverged in task B when asked to (a fault that Core ML
    /// produces only with a diverging model, injected here).
    final class ScriptedEngine: UpdateEngine {
        var losses: [Double]
        var divergeInTaskB: Bool
        var trainedOn: [Int] = []
        init(losses: [Double], divergeInTaskB: Bool = false) {
            self.losses = losses
            self.divergeInTaskB = divergeInTaskB
        }
        func baseLoss(heldOut: LabelledRows) throws -> Double { losses[0] }
        func update(training: LabelledRows, epochs: Int, settings: UpdateSettings, heldOut: LabelledRows?,
                    onEpochEnd: @escaping (Int, Double) -> Bool) throws -> Int? {
            trainedOn.append(training.count)
            if heldOut == nil {
                if divergeInTaskB { throw UpdateDiverged(epoch: 1) }
                return epochs
            }
            for epoch in 1..<losses.count where onEpochEnd(epoch, losses[epoch]) { break }
            return nil
        }
    }

    private func rows(_ n: Int) -> LabelledRows {
        LabelledRows(rows: (0..<n).map { [Double($0), 1] }, targets: .classes((0..<n).map { ["a", "b", "c"][$0 % 3] }))
    }

    func testNonFiniteRowsAreSkippedWithACountBeforeAnyUpdate() throws {
        var data = rows(12)
        data.rows[1][0] = .nan
        data.rows[4][1] = .infinity
        let engine = ScriptedEngine(losses: [1.0, 0.9, 0.8, 0.85, 0.9, 0.95])
        var policy = UpdatePolicy()
        policy.patience = 3
        policy.minPerClass = 2
        let outcome = try UpdatePolicyRunner.personalize(data, policy: policy, engine: engine)
        XCTAssertEqual(outcome.skippedRows, [1, 4])
        XCTAssertEqual(outcome.order.count, 10)
        XCTAssertEqual(engine.trainedOn.last, 10, "task B trains on the 10 usable rows only")
        XCTAssertEqual(outcome.epochs, 2)
    }

    func testEmptyOrAllBadInputIsANoOp() throws {
        let engine = ScriptedEngine(losses: [1.0, 0.5])
        let empty = try UpdatePolicyRunner.personalize(LabelledRows(rows: [], targets: .classes([])), engine: engine)
        XCTAssertTrue(empty.keptBase)
        XCTAssertTrue(empty.note.hasPrefix("no labelled rows"), empty.note)
        let allBad = LabelledRows(rows: [[.nan], [.infinity]], targets: .values([1, 2]))
        let outcome = try UpdatePolicyRunner.personalize(allBad, engine: engine)
        XCTAssertTrue(outcome.keptBase)
        XCTAssertEqual(outcome.skippedRows, [0, 1])
        XCTAssertEqual(engine.trainedOn, [], "no update ran")
        let badTargets = LabelledRows(rows: [[1], [2]], targets: .values([.nan, 1]))
        XCTAssertEqual(UpdatePolicyRunner.unusableRows(badTargets), [0])
    }

    func testADivergingUpdateIsRolledBackAndANonFiniteLossCancels() throws {
        var policy = UpdatePolicy()
        policy.patience = 5
        policy.minPerClass = 2
        let diverging = ScriptedEngine(losses: [1.0, 0.9, 0.8], divergeInTaskB: true)
        let rolledBack = try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: diverging)
        XCTAssertTrue(rolledBack.keptBase)
        XCTAssertNil(rolledBack.personal)
        XCTAssertTrue(rolledBack.note.contains("rolled back"), rolledBack.note)

        let blowsUp = ScriptedEngine(losses: [1.0, 0.9, .infinity, 0.1])
        let cancelled = try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: blowsUp)
        XCTAssertEqual(cancelled.holdoutLosses.count, 3, "cancelled at the non-finite loss")
        XCTAssertEqual(cancelled.epochs, 1, "the best finite epoch")
    }
}
