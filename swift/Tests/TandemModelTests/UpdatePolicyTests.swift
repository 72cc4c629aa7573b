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

    func testAcceptedClassifierTraceReplaysToTheGoldenEpochs() throws {
        let (trace, outcome) = try replay("classifier_policy_accepted.json", model: "classifier.mlmodel")
        XCTAssertEqual(outcome.order, trace.order)
        XCTAssertEqual(outcome.holdout, trace.holdout)
        XCTAssertEqual(outcome.bestEpoch, trace.bestEpoch)
        XCTAssertEqual(outcome.acceptance, trace.acceptance)
        XCTAssertEqual(outcome.acceptance?.accepted, true)
        XCTAssertEqual(outcome.epochs, trace.epochs)
        XCTAssertEqual(outcome.epochs, outcome.bestEpoch, "accepted: task B refits E epochs")
        XCTAssertGreaterThan(outcome.epochs, 0)
        XCTAssertEqual(outcome.personal, outcome.epochs)
        XCTAssertEqual(outcome.holdoutLosses.count, trace.holdoutLosses.count, "cancelled at the same epoch")
        XCTAssertEqual(outcome.decisions.last?.cancel, true)
        XCTAssertEqual(outcome.holdoutLosses[0], trace.holdoutLosses[0], accuracy: 1e-12, "base loss by the interpreter")
        XCTAssertEqual(outcome.holdoutErrors, trace.holdoutErrors, "base errors by the interpreter, the rest replayed")
        XCTAssertEqual(outcome.note, "")
    }

    func testARejectedClassifierUpdateKeepsTheBase() throws {
        let (trace, outcome) = try replay("classifier_policy.json", model: "classifier.mlmodel")
        let best = try XCTUnwrap(trace.bestEpoch)
        XCTAssertGreaterThan(best, 0, "an epoch beat the base's held-out loss ...")
        XCTAssertEqual(trace.epochs, 0, "... but not on enough held-out rows")
        XCTAssertEqual(outcome.bestEpoch, best)
        XCTAssertEqual(outcome.epochs, 0)
        XCTAssertTrue(outcome.keptBase)
        XCTAssertNil(outcome.personal, "task B did not run")
        XCTAssertEqual(outcome.acceptance, trace.acceptance)
        XCTAssertEqual(outcome.acceptance, Acceptance(better: 0, worse: 0, net: 0, needed: 1, accepted: false))
        XCTAssertEqual(outcome.holdoutErrors, trace.holdoutErrors)
        XCTAssertEqual(outcome.holdoutLosses.count, trace.holdoutLosses.count)
        XCTAssertEqual(outcome.note, "epoch \(best) did better than the base on 0 more held-out rows than worse, 1 needed: the base is kept")
    }

    func testRegressorTraceReplaysToTheGoldenEpochs() throws {
        let (trace, outcome) = try replay("regressor_policy.json", model: "regressor.mlmodel")
        XCTAssertEqual(outcome.holdout, trace.holdout)
        XCTAssertEqual(outcome.epochs, trace.epochs)
        XCTAssertEqual(outcome.bestEpoch, trace.bestEpoch)
        XCTAssertEqual(outcome.acceptance, trace.acceptance)
        XCTAssertEqual(outcome.holdoutLosses.count, trace.holdoutLosses.count)
        XCTAssertEqual(outcome.holdoutLosses[0], trace.holdoutLosses[0], accuracy: 1e-12)
        XCTAssertEqual(outcome.holdoutErrors.count, trace.holdoutErrors.count)
        for (mine, theirs) in zip(outcome.holdoutErrors[0], trace.holdoutErrors[0]) {
            XCTAssertEqual(mine, theirs, accuracy: 1e-12, "the base's absolute errors by the interpreter")
        }
        XCTAssertEqual(Array(outcome.holdoutErrors.dropFirst()), Array(trace.holdoutErrors.dropFirst()))
    }

    func testATraceFromBeforeTheCheckDecodesToNoMarginAndReplaysAsBefore() throws {
        let trace = try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy_v0.json")))
        XCTAssertNil(trace.policy.acceptMargin)
        XCTAssertNil(trace.bestEpoch)
        XCTAssertNil(trace.acceptance)
        XCTAssertEqual(trace.holdoutErrors, [])
        for base in [nil, try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel"))] {
            let outcome = try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy,
                                                             engine: GoldenTraceEngine(trace: trace, base: base))
            XCTAssertGreaterThan(trace.epochs, 0)
            XCTAssertEqual(outcome.epochs, trace.epochs, "no check: task B whenever E > 0")
            XCTAssertEqual(outcome.bestEpoch, trace.epochs)
            XCTAssertEqual(outcome.acceptance?.accepted, true)
            XCTAssertEqual(outcome.acceptance?.needed, 1)
            XCTAssertEqual(outcome.personal, trace.epochs)
        }
        // The same user under the check (classifier_policy.json): epoch E does no better, the base is kept.
        let checked = try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy.json")))
        XCTAssertEqual(checked.bestEpoch, trace.epochs)
        XCTAssertEqual(checked.holdoutLosses, trace.holdoutLosses)
        XCTAssertEqual(checked.epochs, 0)
    }

    func testAcceptMarginDecoding() throws {
        XCTAssertEqual(UpdatePolicy().acceptMargin, 0.1)
        let old = #"{"learning_rate": 0.05, "mini_batch_size": 8, "max_epochs": 40, "patience": 5, "holdout_every": 3, "min_per_class": 3, "fallback_epochs": 30"#
        let decode = { (json: String) in try JSONDecoder().decode(UpdatePolicy.self, from: Data(json.utf8)) }
        XCTAssertNil(try decode(old + "}").acceptMargin, "no key: a release from before the check")
        XCTAssertNil(try decode(old + #", "accept_margin": null}"#).acceptMargin)
        XCTAssertEqual(try decode(old + #", "accept_margin": 0.25}"#).acceptMargin, 0.25)
        XCTAssertEqual(try decode(old + "}").learningRate, 0.05)
        var policy = UpdatePolicy()
        policy.acceptMargin = nil
        let encoded = String(decoding: try JSONEncoder().encode(policy), as: UTF8.self)
        XCTAssertTrue(encoded.contains(#""accept_margin":null"#), encoded)
        XCTAssertEqual(try JSONDecoder().decode(UpdatePolicy.self, from: try JSONEncoder().encode(UpdatePolicy())), UpdatePolicy())
    }

    func testAPolicyWithAKeyThisKitDoesNotKnowIsRefusedByName() throws {
        var json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(UpdatePolicy())) as! [String: Any]
        json["holdout_strategy"] = "leave_one_session_out"  // a rule from a newer TandemKit
        json["z_rule"] = 2
        let data = try JSONSerialization.data(withJSONObject: json)
        XCTAssertThrowsError(try JSONDecoder().decode(UpdatePolicy.self, from: data)) { error in
            XCTAssertEqual(error as? PolicyNeedsNewerKit, PolicyNeedsNewerKit(keys: ["holdout_strategy", "z_rule"]))
            XCTAssertEqual("\(error)", "the update policy has holdout_strategy, z_rule, which this TandemKit does "
                           + "not know: the release needs a newer TandemKit")
        }
        // A release's golden vectors say so too, rather than "not a golden trace".
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixtureURL("classifier_policy.json"))) as! [String: Any]
        var golden = fixture["update_policy"] as! [String: Any]
        var policy = golden["policy"] as! [String: Any]
        policy["holdout_strategy"] = "leave_one_session_out"
        golden["policy"] = policy
        let release = try JSONSerialization.data(withJSONObject: ["format": "tandem-golden/v1", "update_policy": golden])
        XCTAssertThrowsError(try PolicyTrace.load(release)) { error in
            XCTAssertEqual(error as? PolicyNeedsNewerKit, PolicyNeedsNewerKit(keys: ["holdout_strategy"]))
        }
        golden["policy"] = json.filter { $0.key != "holdout_strategy" && $0.key != "z_rule" }
        let known = try JSONSerialization.data(withJSONObject: ["format": "tandem-golden/v1", "update_policy": golden])
        XCTAssertEqual(try PolicyTrace.load(known).policy, UpdatePolicy())  // the same file without the new keys loads
    }

    func testTheAcceptanceRule() {
        // A regressor's absolute errors: fell by more than 1e-12 is better, rose by more is worse.
        let base = [1.0, 2.0, 3.0, 0.5, 0.7]
        let best = [0.5, 2.0 + 1e-13, 3.5, 0.5 - 1e-11, 0.7 - 1e-13]
        XCTAssertEqual(UpdatePolicyRunner.acceptance(base: base, best: best, margin: 0.1),
                       Acceptance(better: 2, worse: 1, net: 1, needed: 1, accepted: true))
        XCTAssertEqual(UpdatePolicyRunner.acceptance(base: base, best: best, margin: 0.3),  // ceil(1.5) = 2
                       Acceptance(better: 2, worse: 1, net: 1, needed: 2, accepted: false))
        XCTAssertEqual(UpdatePolicyRunner.acceptance(base: base, best: best, margin: 0),  // at least one row, always
                       Acceptance(better: 2, worse: 1, net: 1, needed: 1, accepted: true))
        XCTAssertEqual(UpdatePolicyRunner.acceptance(base: base, best: base.map { $0 + 1 }, margin: nil),
                       Acceptance(better: 0, worse: 5, net: -5, needed: 1, accepted: true), "no check: accepted whatever the counts")
        // needed = max(1, ceil(margin x rows - 1e-9)): 0.3 x 10 is 3.0000000000000004 in floating point.
        let ten = [Double](repeating: 1, count: 10)
        XCTAssertEqual(UpdatePolicyRunner.acceptance(base: ten, best: ten, margin: 0.3).needed, 3)
        XCTAssertEqual(UpdatePolicyRunner.acceptance(base: ten, best: ten, margin: 0.31).needed, 4)
        XCTAssertEqual(UpdatePolicyRunner.acceptance(base: ten, best: ten, margin: .infinity).accepted, false)
        // NaN errors count neither way.
        XCTAssertEqual(UpdatePolicyRunner.acceptance(base: [1, .nan], best: [.nan, 0], margin: 0.1).net, 0)
    }

    func testRowErrors() {
        // A classifier: the argmax class, the first maximum on a tie (numpy's argmax; NaN wins).
        let p: [[Double]] = [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.1, .nan, 0.9]]
        XCTAssertEqual(HeldOutLoss.classErrors(p, classLabels: ["a", "b", "c"], labels: ["b", "a", "b", "b"]), [0, 0, 1, 0])
        // A regressor: |prediction - target|.
        XCTAssertEqual(HeldOutLoss.valueErrors([1.5, -2, 3], targets: [1, 1, 3]), [0.5, 3, 0])
    }

    func testATamperedTraceIsCaught() throws {
        let golden = try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy_accepted.json")))
        let best = golden.epochs
        // From the best epoch on everything looks bad: the policy picks the one before, cancels earlier.
        var worse = golden
        for e in best..<golden.holdoutLosses.count { worse.holdoutLosses[e] = 10 }
        let outcome = try UpdatePolicyRunner.personalize(worse.data, policy: worse.policy, engine: GoldenTraceEngine(trace: worse))
        XCTAssertEqual(outcome.bestEpoch, best - 1)
        XCTAssertLessThan(outcome.holdoutLosses.count, golden.holdoutLosses.count)
        // A later epoch now looks best: the policy would run past the end of the recorded trace.
        var better = golden
        better.holdoutLosses[best + 1] = golden.holdoutLosses[best] - 0.01
        XCTAssertThrowsError(try UpdatePolicyRunner.personalize(better.data, policy: better.policy,
                                                                engine: GoldenTraceEngine(trace: better))) { error in
            XCTAssertEqual(error as? TraceReplayError, .traceEnds(epoch: golden.holdoutLosses.count))
        }
        // Epoch E's recorded errors say it got every held-out row right: the check would pass.
        var rejected = try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy.json")))
        let e = try XCTUnwrap(rejected.bestEpoch)
        rejected.holdoutErrors[e] = rejected.holdoutErrors[e].map { _ in 0 }
        let accepted = try UpdatePolicyRunner.personalize(rejected.data, policy: rejected.policy, engine: GoldenTraceEngine(trace: rejected))
        XCTAssertEqual(accepted.epochs, e)
        XCTAssertNotEqual(accepted.acceptance, rejected.acceptance)
    }

    func testAFileWithoutATraceIsRefusedInOneLine() {
        XCTAssertThrowsError(try PolicyTrace.load(Data("{\"format\": \"tandem-golden/v1\"}".utf8))) { error in
            XCTAssertEqual(error as? TraceReplayError, .noTrace("no 'policy'"))
        }
        XCTAssertThrowsError(try PolicyTrace.load(Data("[1,".utf8))) { error in
            XCTAssertEqual("\(error)", "not a golden update-policy trace (not JSON): pass a release's golden_vectors.json")
        }
    }

    /// Scripted losses and held-out errors per epoch (by default: the base gets every held-out row
    /// wrong, every epoch after it every row right); throws UpdateDiverged in task B when asked to (a
    /// fault that Core ML produces only with a diverging model, injected here).
    final class ScriptedEngine: UpdateEngine {
        var losses: [Double]
        var divergeInTaskB: Bool
        var errors: (_ epoch: Int, _ rows: Int) -> [Double]
        var trainedOn: [Int] = []
        init(losses: [Double], divergeInTaskB: Bool = false,
             errors: @escaping (Int, Int) -> [Double] = { epoch, n in Array(repeating: epoch == 0 ? 1 : 0, count: n) }) {
            self.losses = losses
            self.divergeInTaskB = divergeInTaskB
            self.errors = errors
        }
        func baseCheck(heldOut: LabelledRows) throws -> HeldOutCheck { HeldOutCheck(loss: losses[0], errors: errors(0, heldOut.count)) }
        func baseOverflowRows(_ rows: [[Double]]) throws -> [Int] { [] }
        func update(training: LabelledRows, epochs: Int, settings: UpdateSettings, heldOut: LabelledRows?,
                    onEpochEnd: @escaping (Int, HeldOutCheck) -> Bool) throws -> Int? {
            trainedOn.append(training.count)
            guard let heldOut = heldOut else {
                if divergeInTaskB { throw UpdateDiverged(epoch: 1) }
                return epochs
            }
            for epoch in 1..<losses.count where onEpochEnd(epoch, HeldOutCheck(loss: losses[epoch], errors: errors(epoch, heldOut.count))) { break }
            return nil
        }
    }

    private func rows(_ n: Int) -> LabelledRows {
        LabelledRows(rows: (0..<n).map { [Double($0), 1] }, targets: .classes((0..<n).map { ["a", "b", "c"][$0 % 3] }))
    }

    func testTheCheckDecidesWhetherTaskBRuns() throws {
        var policy = UpdatePolicy()
        policy.patience = 3
        policy.minPerClass = 2
        policy.acceptMargin = 0.25  // 12 rows, 6 held out (2 of each class): net 2 needed
        let losses = [1.0, 0.9, 0.8, 0.85, 0.9, 0.95]
        // Epoch 2 gets two rows right the base got wrong and one wrong the base got right: net 1 < 2.
        let base: [Double] = [1, 1, 0, 0, 0, 0], two: [Double] = [0, 0, 1, 0, 0, 0]
        let rejecting = ScriptedEngine(losses: losses, errors: { e, _ in e == 2 ? two : base })
        let rejected = try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: rejecting)
        XCTAssertEqual(rejected.holdout.count, 6)
        XCTAssertEqual(rejected.bestEpoch, 2)
        XCTAssertEqual(rejected.acceptance, Acceptance(better: 2, worse: 1, net: 1, needed: 2, accepted: false))
        XCTAssertEqual(rejected.epochs, 0)
        XCTAssertTrue(rejected.keptBase)
        XCTAssertNil(rejected.personal)
        XCTAssertEqual(rejecting.trainedOn, [6], "task A only: task B did not run")
        XCTAssertEqual(rejected.note, "epoch 2 did better than the base on 1 more held-out rows than worse, 2 needed: the base is kept")
        XCTAssertEqual(rejected.holdoutErrors.count, rejected.holdoutLosses.count)
        XCTAssertEqual(rejected.holdoutErrors[2], two)

        // One row more right: net 2, accepted, task B refits E = 2 epochs on all 12 rows.
        let three: [Double] = [0, 0, 1, 0, 0, 0].enumerated().map { $0.offset == 2 ? 0 : $0.element }
        let accepting = ScriptedEngine(losses: losses, errors: { e, _ in e == 2 ? three : base })
        let accepted = try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: accepting)
        XCTAssertEqual(accepted.acceptance, Acceptance(better: 2, worse: 0, net: 2, needed: 2, accepted: true))
        XCTAssertEqual(accepted.epochs, 2)
        XCTAssertEqual(accepted.personal, 2)
        XCTAssertEqual(accepting.trainedOn, [6, 12])
        XCTAssertEqual(accepted.note, "")

        // No margin (a release from before the check): task B whenever E > 0.
        policy.acceptMargin = nil
        let unchecked = try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: ScriptedEngine(losses: losses, errors: { e, _ in e == 2 ? two : base }))
        XCTAssertEqual(unchecked.epochs, 2)
        XCTAssertEqual(unchecked.acceptance, Acceptance(better: 2, worse: 1, net: 1, needed: 1, accepted: true))

        // E = 0: no check, the base is kept for the loss alone.
        policy.acceptMargin = 0.1
        let noBetter = try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: ScriptedEngine(losses: [0.5, 0.9, 0.8, 0.85, 0.9]))
        XCTAssertEqual(noBetter.bestEpoch, 0)
        XCTAssertNil(noBetter.acceptance)
        XCTAssertTrue(noBetter.note.hasPrefix("no epoch beat the base"), noBetter.note)

        // No held-out rows (a class too small): task B runs fallbackEpochs, no check, best epoch 0.
        policy.minPerClass = 5
        let fallback = try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: ScriptedEngine(losses: losses))
        XCTAssertEqual(fallback.epochs, policy.fallbackEpochs)
        XCTAssertEqual(fallback.bestEpoch, 0)
        XCTAssertNil(fallback.acceptance)
        XCTAssertEqual(fallback.holdoutErrors, [])
    }

    func testAnEngineWithoutHeldOutErrorsCannotPassTheCheck() {
        var policy = UpdatePolicy()
        policy.patience = 3
        policy.minPerClass = 2
        let silent = ScriptedEngine(losses: [1.0, 0.9, 0.8, 0.85, 0.9, 0.95], errors: { _, _ in [] })
        XCTAssertThrowsError(try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: silent)) {
            XCTAssertEqual($0 as? HeldOutErrorsMissing, HeldOutErrorsMissing(epoch: 0, expected: 6, got: 0))
        }
        policy.acceptMargin = nil  // no check: nothing to count
        XCTAssertEqual(try UpdatePolicyRunner.personalize(rows(12), policy: policy, engine: silent).epochs, 2)
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
        XCTAssertEqual(UpdatePolicyRunner.nonFiniteRows(badTargets), [0])
    }

    /// A user's rows with one row of 1e308 inserted at `at` (labelled as the row it displaces).
    private func withOverflowRow(_ data: LabelledRows, at: Int) -> LabelledRows {
        var rows = data.rows, targets = data.targets
        rows.insert(Array(repeating: 1e308, count: rows[0].count), at: at)
        switch targets {
        case .classes(var c): c.insert(c[at], at: at); targets = .classes(c)
        case .values(var v): v.insert(v[at], at: at); targets = .values(v)
        }
        return LabelledRows(rows: rows, targets: targets)
    }

    /// Finite features the base overflows on (a row of 1e308) are skipped before any update, as
    /// update_policy.py does: the policy then runs as on the same rows without it, the k-NN candidate too.
    func testRowsTheBaseOverflowsOnAreSkippedAsPython() throws {
        for (name, model) in [("classifier_policy_accepted.json", "classifier.mlmodel"), ("regressor_policy.json", "regressor.mlmodel"),
                              ("classifier_policy_knn_knn.json", "classifier.mlmodel")] {
            let trace = try PolicyTrace.load(Data(contentsOf: try fixtureURL(name)))
            let base = try InterpretedModel(contentsOf: try fixtureURL(model))
            let knn = try InterpretedKNNEngine(contentsOf: try fixtureURL("classifier_knn.mlmodel"))
            let data = withOverflowRow(trace.data, at: 5)
            XCTAssertThrowsError(try base.predict([data.rows[5]]), "\(name): the base overflows on the row")
            XCTAssertEqual(try base.overflowRows(data.rows), [5], name)
            func run(_ data: LabelledRows) throws -> PolicyOutcome<InterpretedModel> {
                try UpdatePolicyRunner.personalize(data, policy: trace.policy, engine: try InterpretedUpdateEngine(base: base),
                                                   knn: trace.policy.knnNeighbors == nil ? nil : knn)
            }
            let outcome = try run(data), clean = try run(trace.data)
            XCTAssertEqual(outcome.skippedRows, [5], name)
            XCTAssertEqual(clean.skippedRows, [], name)
            XCTAssertEqual(outcome.order, clean.order, name)
            XCTAssertEqual(outcome.turns, clean.turns, "\(name): the same held-out rows, losses, errors and checks")
            XCTAssertEqual(outcome.epochs, clean.epochs, name)
            XCTAssertEqual(outcome.method, clean.method, name)
            XCTAssertEqual(outcome.method, trace.method ?? (trace.epochs > 0 ? .fineTune : .base), name)
            XCTAssertEqual(outcome.knn, clean.knn, name)
            XCTAssertEqual(outcome.note, clean.note, name)
            let personal = try XCTUnwrap(outcome.personal, name), cleanPersonal = try XCTUnwrap(clean.personal, name)
            XCTAssertEqual(try personal.predict(trace.inputs), try cleanPersonal.predict(trace.inputs), name)
        }
        // Nothing usable left: the base, with update_policy.py's note.
        let base = try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel"))
        let engine = try InterpretedUpdateEngine(base: base)
        let bad = LabelledRows(rows: [Array(repeating: 1e308, count: 8), Array(repeating: .nan, count: 8)],
                               targets: .classes(["sit", "walk"]))
        let outcome = try UpdatePolicyRunner.personalize(bad, engine: engine)
        XCTAssertTrue(outcome.keptBase)
        XCTAssertEqual(outcome.skippedRows, [0, 1])
        XCTAssertEqual(outcome.note, "all 2 labelled rows are unusable (NaN, inf or overflow): the base is kept")
        let empty = try UpdatePolicyRunner.personalize(LabelledRows(rows: [], targets: .classes([])), engine: engine)
        XCTAssertEqual(empty.note, "no labelled rows: the base is kept")
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

    func testKTurnsHoldOutEveryRowOnceInContiguousBlocksPerClass() {
        let y = Targets.classes(Array(repeating: "a", count: 7) + Array(repeating: "b", count: 3) + Array(repeating: "c", count: 4))
        var policy = UpdatePolicy()
        policy.holdoutFolds = 3
        // numpy's array_split per class: a 7 -> 3+2+2, b 3 -> 1+1+1, c 4 -> 2+1+1 (as test_update_policy.py)
        XCTAssertEqual(UpdatePolicyRunner.holdoutTurns(y, policy), [[0, 1, 2, 7, 10, 11], [3, 4, 8, 12], [5, 6, 9, 13]])
        XCTAssertEqual(UpdatePolicyRunner.holdoutTurns(y, UpdatePolicy()), [UpdatePolicyRunner.holdoutRows(y, UpdatePolicy())])
        policy.holdoutFolds = 4
        XCTAssertEqual(UpdatePolicyRunner.holdoutTurns(y, policy), [], "b has 3 < 4 rows: the fallback epochs")
        policy.holdoutFolds = 2
        XCTAssertEqual(UpdatePolicyRunner.holdoutTurns(.values([1, 2, 3, 4, 5]), policy), [[0, 1, 2], [3, 4]])
        XCTAssertEqual(UpdatePolicyRunner.lowerMedian([5, 0, 9]), 5)
        XCTAssertEqual(UpdatePolicyRunner.lowerMedian([4, 2, 8, 6]), 4)
    }

    func testKTurnTracesReplayTurnByTurn() throws {
        for (name, model) in [("classifier_policy_folds.json", "classifier.mlmodel"), ("regressor_policy_folds.json", "regressor.mlmodel")] {
            let (trace, outcome) = try replay(name, model: model)
            XCTAssertEqual(trace.policy.holdoutFolds, 3)
            XCTAssertEqual(outcome.turns.count, 3, name)
            XCTAssertEqual(outcome.turns.count, trace.turns.count, name)
            XCTAssertEqual(outcome.turns.flatMap(\.holdout).sorted(), Array(0..<trace.inputs.count), "every row held out once")
            for (mine, theirs) in zip(outcome.turns, trace.turns) {
                XCTAssertEqual(mine.holdout, theirs.holdout, name)
                XCTAssertEqual(mine.holdoutLosses.count, theirs.holdoutLosses.count, "\(name): cancelled at the same epoch")
                XCTAssertEqual(mine.bestEpoch, theirs.bestEpoch, name)
                XCTAssertEqual(mine.acceptance, theirs.acceptance, name)
            }
            XCTAssertEqual(outcome.bestEpoch, trace.bestEpoch, "\(name): the lower median of the turns' best epochs")
            XCTAssertEqual(outcome.acceptance, trace.acceptance, "\(name): the net counts summed over the turns")
            XCTAssertEqual(outcome.acceptance?.net, outcome.turns.map(\.acceptance.net).reduce(0, +))
            XCTAssertEqual(outcome.epochs, trace.epochs, name)
        }
        let (trace, outcome) = try replay("classifier_policy_folds.json", model: "classifier.mlmodel")
        XCTAssertEqual(Set(trace.turns.compactMap(\.bestEpoch)).count, 3, "the fixture's turns stop at different epochs")
        XCTAssertEqual(outcome.epochs, trace.turns.compactMap(\.bestEpoch).sorted()[1])
    }

    func testATraceWithTooFewTurnsIsRefused() throws {
        var trace = try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy_folds.json")))
        trace.recordedTurns?.removeLast()
        XCTAssertThrowsError(try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy, engine: GoldenTraceEngine(trace: trace))) {
            XCTAssertEqual($0 as? TraceReplayError, .noTurn(2))
        }
        let old = #"{"learning_rate": 0.05, "mini_batch_size": 8, "max_epochs": 40, "patience": 5, "holdout_every": 3, "min_per_class": 3, "fallback_epochs": 30}"#
        XCTAssertEqual(try JSONDecoder().decode(UpdatePolicy.self, from: Data(old.utf8)).holdoutFolds, 1, "a release from before the turns")
        var folds = UpdatePolicy()
        folds.holdoutFolds = 3
        XCTAssertEqual(try JSONDecoder().decode(UpdatePolicy.self, from: try JSONEncoder().encode(folds)), folds)
    }

    // ---- the k-NN candidate (policy knn_neighbors) ------------------------------------------------

    private func knnTrace(_ method: String) throws -> PolicyTrace {
        try PolicyTrace.load(Data(contentsOf: try fixtureURL("classifier_policy_knn_\(method).json")))
    }

    /// Three users of the same release (knn_neighbors 3): the k-NN model beats a passing fine-tune, the
    /// fine-tune beats a passing k-NN model, neither passes. The k-NN errors computed by the spec
    /// interpreter from classifier_knn.mlmodel, or replayed from the trace: the same decisions.
    func testKNNTracesReplayToTheGoldenMethod() throws {
        let base = try InterpretedModel(contentsOf: try fixtureURL("classifier.mlmodel"))
        let knnModel = try InterpretedKNNEngine(contentsOf: try fixtureURL("classifier_knn.mlmodel"))
        for method in ["knn", "fine_tune", "base"] {
            let trace = try knnTrace(method)
            XCTAssertEqual(trace.policy.knnNeighbors, 3)
            XCTAssertEqual(trace.method?.rawValue, method)
            for knn in [knnModel, nil] {
                let engine = GoldenTraceEngine(trace: trace, base: base, knn: knn)
                let outcome = try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy, engine: engine, knn: engine)
                let name = "\(method) (k-NN \(knn == nil ? "replayed" : "computed"))"
                XCTAssertEqual(outcome.method, trace.method, name)
                XCTAssertEqual(outcome.turns.count, trace.turns.count, name)
                XCTAssertEqual(outcome.turns.map(\.knn), trace.turns.map(\.knn), "\(name): each turn's k-NN errors and check")
                XCTAssertNotNil(outcome.turns.first?.knn, name)
                XCTAssertEqual(outcome.knn, trace.knn, "\(name): the k-NN verdict")
                XCTAssertEqual(outcome.epochs, trace.epochs, name)
                XCTAssertEqual(outcome.bestEpoch, trace.bestEpoch, name)
                XCTAssertEqual(outcome.acceptance, trace.acceptance, name)
                XCTAssertEqual(outcome.holdoutErrors, trace.holdoutErrors, name)
                XCTAssertEqual(outcome.keptBase, method == "base", name)
                switch outcome.method {
                case .knn: XCTAssertEqual(outcome.personal, trace.inputs.count, "\(name): the k-NN model holds every row")
                case .fineTune: XCTAssertEqual(outcome.personal, trace.epochs, name)
                case .base: XCTAssertNil(outcome.personal, name)
                }
            }
        }
        let knn = try knnTrace("knn"), fineTune = try knnTrace("fine_tune"), neither = try knnTrace("base")
        // The k-NN user: both pass, the k-NN model by more rows; task B does not run.
        XCTAssertEqual(knn.acceptance?.accepted, true)
        XCTAssertEqual(knn.knn, Acceptance(better: 14, worse: 4, net: 10, needed: 3, accepted: true))
        XCTAssertGreaterThan(try XCTUnwrap(knn.knn?.net), try XCTUnwrap(knn.acceptance?.net))
        XCTAssertEqual(knn.epochs, 0)
        XCTAssertGreaterThan(try XCTUnwrap(fineTune.acceptance?.net), try XCTUnwrap(fineTune.knn?.net))
        XCTAssertEqual(fineTune.knn?.accepted, true, "the fine-tune user's k-NN model passes too, by fewer rows")
        XCTAssertEqual(neither.acceptance?.accepted, false)
        XCTAssertEqual(neither.knn?.accepted, false)
        let engine = GoldenTraceEngine(trace: knn)
        let outcome = try UpdatePolicyRunner.personalize(knn.data, policy: knn.policy, engine: engine, knn: engine)
        XCTAssertEqual(outcome.note, "the k-NN personal model did better than the base on 10 more held-out rows than worse "
                       + "(3 needed), the fine-tune on \(knn.acceptance!.net)")
    }

    func testTheChoiceBetweenTheCandidates() {
        func check(_ net: Int, needed: Int = 2, accepted: Bool? = nil) -> Acceptance {
            Acceptance(better: max(net, 0), worse: max(-net, 0), net: net, needed: needed, accepted: accepted ?? (net >= needed))
        }
        let prefers = UpdatePolicyRunner.prefersKNN
        XCTAssertTrue(prefers(check(3), check(2), 5), "both pass: the larger net count")
        XCTAssertFalse(prefers(check(3), check(3), 5), "a tie: the fine-tune")
        XCTAssertFalse(prefers(check(3), check(4), 5))
        XCTAssertTrue(prefers(check(2), check(1), 5), "the fine-tune fails its check")
        XCTAssertTrue(prefers(check(2), nil, 0), "no epoch beat the base")
        XCTAssertTrue(prefers(check(2), check(5), 0), "E = 0: the fine-tune does not pass, whatever its counts")
        XCTAssertFalse(prefers(check(1), nil, 0), "the k-NN model fails its check: neither passes")
        XCTAssertFalse(prefers(nil, nil, 0), "no k-NN candidate")
        XCTAssertTrue(prefers(check(2), check(1, needed: 1, accepted: true), 3), "no margin: the fine-tune passes, by fewer rows")
        // The k-NN verdict: rows needed as the fine-tune's, but one net row even without a margin.
        var turn = PolicyTurn()
        turn.holdout = Array(0..<10)
        turn.knn = KNNCheck(errors: [], acceptance: Acceptance(better: 1, worse: 1, net: 0, needed: 1, accepted: true))
        XCTAssertEqual(UpdatePolicyRunner.knnVerdict([turn, turn], margin: nil), Acceptance(better: 2, worse: 2, net: 0, needed: 1, accepted: false))
        XCTAssertEqual(UpdatePolicyRunner.verdict([turn], margin: nil).accepted, true, "the fine-tune's check: none without a margin")
        turn.knn?.acceptance.better = 3
        XCTAssertEqual(UpdatePolicyRunner.knnVerdict([turn, turn], margin: 0.1), Acceptance(better: 6, worse: 2, net: 4, needed: 2, accepted: true))
        XCTAssertEqual(UpdatePolicyRunner.knnVerdict([turn, turn], margin: 0.25).accepted, false, "ceil(0.25 x 20) = 5 needed")
    }

    func testKnnNeighborsIsOptionalAndEncodedOnlyWhenSet() throws {
        let release = #"{"learning_rate": 0.05, "mini_batch_size": 8, "max_epochs": 40, "patience": 5, "holdout_every": 3, "min_per_class": 3, "fallback_epochs": 30, "accept_margin": 0.1, "holdout_folds": 1"#
        let decode = { (json: String) in try JSONDecoder().decode(UpdatePolicy.self, from: Data(json.utf8)) }
        XCTAssertNil(try decode(release + "}").knnNeighbors, "a release without the k-NN candidate")
        XCTAssertNil(try decode(release + #", "knn_neighbors": null}"#).knnNeighbors)
        XCTAssertEqual(try decode(release + #", "knn_neighbors": 3}"#).knnNeighbors, 3)
        XCTAssertNil(UpdatePolicy().knnNeighbors)
        let plain = String(decoding: try JSONEncoder().encode(try decode(release + "}")), as: UTF8.self)
        XCTAssertFalse(plain.contains("knn_neighbors"), "a kit from before the k-NN would refuse the key: \(plain)")
        var knn = UpdatePolicy()
        knn.knnNeighbors = 3
        let encoded = try JSONEncoder().encode(knn)
        XCTAssertTrue(String(decoding: encoded, as: UTF8.self).contains(#""knn_neighbors":3"#))
        XCTAssertEqual(try JSONDecoder().decode(UpdatePolicy.self, from: encoded), knn)
        // A key this kit does not know is still refused, by name, beside the k-NN one.
        XCTAssertThrowsError(try decode(release + #", "knn_neighbors": 3, "knn_metric": "cosine"}"#)) {
            XCTAssertEqual($0 as? PolicyNeedsNewerKit, PolicyNeedsNewerKit(keys: ["knn_metric"]))
        }
    }

    func testTheKNNCandidateNeedsItsModelAndAClassifierAndTheTracesTurns() throws {
        let trace = try knnTrace("knn")
        XCTAssertThrowsError(try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy, engine: GoldenTraceEngine(trace: trace))) {
            XCTAssertEqual("\($0)", "the update policy has knn_neighbors 3: pass the release's k-NN personal model "
                           + "(personal_knn.mlmodel) to the policy")
        }
        let regressor = try PolicyTrace.load(Data(contentsOf: try fixtureURL("regressor_policy.json")))
        var policy = regressor.policy
        policy.knnNeighbors = 3
        let engine = GoldenTraceEngine(trace: regressor)
        XCTAssertThrowsError(try UpdatePolicyRunner.personalize(regressor.data, policy: policy, engine: engine, knn: engine)) {
            XCTAssertTrue("\($0)".hasPrefix("the k-NN candidate needs a classifier"), "\($0)")
        }
        // A trace that does not record the k-NN candidate cannot replay it.
        var unrecorded = trace
        unrecorded.recordedTurns = unrecorded.recordedTurns?.map { var t = $0; t.knn = nil; return t }
        let replay = GoldenTraceEngine(trace: unrecorded)
        XCTAssertThrowsError(try UpdatePolicyRunner.personalize(unrecorded.data, policy: unrecorded.policy, engine: replay, knn: replay)) {
            XCTAssertEqual($0 as? TraceReplayError, .noKNN(turn: 0))
        }
        // Without knn_neighbors, a k-NN engine given is not a candidate: the fine-tune alone, as before.
        var plain = trace
        plain.policy.knnNeighbors = nil
        let alone = GoldenTraceEngine(trace: plain)
        let outcome = try UpdatePolicyRunner.personalize(plain.data, policy: plain.policy, engine: alone, knn: alone)
        XCTAssertNil(outcome.knn)
        XCTAssertNil(outcome.turns.first?.knn)
        XCTAssertEqual(outcome.method, .fineTune)
        XCTAssertEqual(outcome.epochs, trace.bestEpoch)
    }

    func testATamperedKNNRecordIsCaught() throws {
        // The fine-tune user's trace, with its k-NN candidate now right on every held-out row: it wins.
        var trace = try knnTrace("fine_tune")
        trace.recordedTurns = trace.recordedTurns?.map { var t = $0; t.knn?.errors = Array(repeating: 0, count: t.holdout.count); return t }
        let engine = GoldenTraceEngine(trace: trace)
        let outcome = try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy, engine: engine, knn: engine)
        XCTAssertEqual(outcome.method, .knn)
        XCTAssertNotEqual(outcome.method, trace.method)
        XCTAssertNotEqual(outcome.knn, trace.knn)
        XCTAssertEqual(outcome.epochs, 0)
    }
}
