// A release's golden vectors (golden_vectors.json, written by tandem/device/golden.py) as far as
// TandemModel reads them: the model's identity and the app's update-policy trace.
import Foundation

/// `update_policy` of golden_vectors.json: the policy, its inputs in capture order, and what the
/// Python runtime did (row order, held-out rows, held-out loss and each held-out row's error per
/// epoch, the best epoch, the acceptance check on it, chosen epochs). A trace from a release before
/// the acceptance check has no errors, best epoch or acceptance (and its policy no accept_margin).
/// The top-level held-out rows, losses and errors are the first run of task A's; `turns` has every
/// run (a policy with holdout_folds > 1 runs task A once per fold), and best_epoch and acceptance
/// at the top are E and the verdict over all turns. A policy with knn_neighbors also records each
/// turn's k-NN candidate (`turns[i].knn`), its verdict over the turns (`knn`) and what the user got
/// (`method`).
public struct PolicyTrace: Decodable, Equatable {
    public var policy: UpdatePolicy
    public var inputs: [[Double]]
    public var targets: Targets
    public var order: [Int]  // indices into the usable rows (the inputs less `skipped`)
    /// The rows the policy refused before any update (nil: a trace from before they were recorded).
    public var skipped: [Int]?
    public var holdout: [Int]
    public var holdoutLosses: [Double]
    public var holdoutErrors: [[Double]]  // index e: each held-out row's error after e epochs ([] in an older trace)
    public var bestEpoch: Int?  // nil: an older trace, from before the acceptance check
    public var acceptance: Acceptance?  // nil: task A did not run, E = 0, or an older trace
    public var knn: Acceptance?  // the k-NN candidate's verdict (nil: none, no turns, or a trace from before it)
    public var method: PersonalizationMethod?  // nil: a trace from before the k-NN candidate
    public var epochs: Int
    public var probabilitiesAfter: [[Double]]?
    public var predictionsAfter: [Double]?
    /// "turns" as recorded (nil: a trace from before the turns, which ran task A once at most).
    public var recordedTurns: [TraceTurn]?

    enum CodingKeys: String, CodingKey {
        case policy, inputs, labels, order, skipped, holdout, epochs, acceptance, turns, knn, method
        case holdoutLosses = "holdout_losses", holdoutErrors = "holdout_errors", bestEpoch = "best_epoch"
        case probabilitiesAfter = "probabilities_after", predictionsAfter = "predictions_after"
    }

    enum AcceptanceKeys: String, CodingKey { case better, worse, net, needed, accepted }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        policy = try c.decode(UpdatePolicy.self, forKey: .policy)
        inputs = try c.decode([[Double]].self, forKey: .inputs)
        if let classes = try? c.decode([String].self, forKey: .labels) {
            targets = .classes(classes)
        } else {
            targets = .values(try c.decode([Double].self, forKey: .labels))
        }
        order = try c.decode([Int].self, forKey: .order)
        skipped = try c.decodeIfPresent([Int].self, forKey: .skipped)
        holdout = try c.decode([Int].self, forKey: .holdout)
        holdoutLosses = try c.decode([Double].self, forKey: .holdoutLosses)
        holdoutErrors = try c.decodeIfPresent([[Double]].self, forKey: .holdoutErrors) ?? []
        bestEpoch = try c.decodeIfPresent(Int.self, forKey: .bestEpoch)
        acceptance = try Self.acceptance(c, .acceptance)
        recordedTurns = try c.decodeIfPresent([TraceTurn].self, forKey: .turns)
        knn = try Self.acceptance(c, .knn)
        method = try c.decodeIfPresent(PersonalizationMethod.self, forKey: .method)
        epochs = try c.decode(Int.self, forKey: .epochs)
        probabilitiesAfter = try c.decodeIfPresent([[Double]].self, forKey: .probabilitiesAfter)
        predictionsAfter = try c.decodeIfPresent([Double].self, forKey: .predictionsAfter)
    }

    /// An acceptance object, nil when absent, null or {} (the check did not run).
    static func acceptance<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> Acceptance? {
        guard c.contains(key), try !c.decodeNil(forKey: key),
              try !c.nestedContainer(keyedBy: AcceptanceKeys.self, forKey: key).allKeys.isEmpty else { return nil }
        return try c.decode(Acceptance.self, forKey: key)
    }

    public var data: LabelledRows { LabelledRows(rows: inputs, targets: targets) }

    /// Every run of task A. The first is read from the top-level fields (so an edit of them is what
    /// gets replayed, and an older trace has its one run); its best epoch and acceptance come from
    /// "turns" when recorded, the top level being E and the verdict over all turns.
    public var turns: [TraceTurn] {
        guard !holdout.isEmpty else { return [] }
        let first = TraceTurn(holdout: holdout, holdoutLosses: holdoutLosses, holdoutErrors: holdoutErrors,
                              bestEpoch: recordedTurns?.first?.bestEpoch ?? bestEpoch,
                              acceptance: recordedTurns?.first.map(\.acceptance) ?? acceptance, knn: recordedTurns?.first?.knn)
        return [first] + (recordedTurns?.dropFirst() ?? [])
    }

    /// The trace from a release's golden_vectors.json (its `update_policy`), or a bare trace file.
    public static func load(_ data: Data) throws -> PolicyTrace {
        let decoder = JSONDecoder()
        struct Release: Decodable { let update_policy: PolicyTrace? }
        do {
            if let trace = try decoder.decode(Release.self, from: data).update_policy { return trace }
            return try decoder.decode(PolicyTrace.self, from: data)
        } catch let newer as PolicyNeedsNewerKit {
            throw newer  // a golden trace, of a release made for a newer TandemKit
        } catch {
            throw TraceReplayError.noTrace(Self.why(error))
        }
    }

    /// A decoding error in one line: the missing key or the path to the bad value.
    static func why(_ error: Error) -> String {
        switch error as? DecodingError {
        case .keyNotFound(let key, _)?: return "no '\(key.stringValue)'"
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?, .dataCorrupted(let context)?:
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "not JSON" : "a bad value at '\(path)'"
        default: return "\(error)"
        }
    }
}

/// One run of task A in a golden trace (an element of "turns").
public struct TraceTurn: Decodable, Equatable {
    public var holdout: [Int]
    public var holdoutLosses: [Double]
    public var holdoutErrors: [[Double]]
    public var bestEpoch: Int?
    public var acceptance: Acceptance?
    public var knn: KNNCheck?  // the k-NN candidate on this turn (a policy with knn_neighbors)

    public init(holdout: [Int], holdoutLosses: [Double], holdoutErrors: [[Double]], bestEpoch: Int?, acceptance: Acceptance?,
                knn: KNNCheck? = nil) {
        (self.holdout, self.holdoutLosses, self.holdoutErrors) = (holdout, holdoutLosses, holdoutErrors)
        (self.bestEpoch, self.acceptance, self.knn) = (bestEpoch, acceptance, knn)
    }

    enum CodingKeys: String, CodingKey {
        case holdout, acceptance, knn
        case holdoutLosses = "holdout_losses", holdoutErrors = "holdout_errors", bestEpoch = "best_epoch"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        holdout = try c.decode([Int].self, forKey: .holdout)
        holdoutLosses = try c.decode([Double].self, forKey: .holdoutLosses)
        holdoutErrors = try c.decodeIfPresent([[Double]].self, forKey: .holdoutErrors) ?? []
        bestEpoch = try c.decodeIfPresent(Int.self, forKey: .bestEpoch)
        acceptance = try PolicyTrace.acceptance(c, .acceptance)
        knn = try c.decodeIfPresent(KNNCheck.self, forKey: .knn)
    }
}

public enum TraceReplayError: Error, CustomStringConvertible, Equatable {
    case traceEnds(epoch: Int)
    case noTurn(Int)
    case trainingSize(expected: Int, got: Int)
    case noTrace(String)
    case noKNN(turn: Int)

    public var description: String {
        switch self {
        case .noKNN(let turn):
            return "the golden trace records no k-NN candidate for run \(turn + 1) of task A, but the policy has knn_neighbors: "
                + "pass the k-NN personal model or a trace that records it"
        case .noTurn(let turn):
            return "the golden trace records \(turn) run(s) of task A, but the policy started another: the policies disagree"
        case .traceEnds(let epoch):
            return "the golden trace ends before epoch \(epoch), but the policy did not cancel task A there: the policies disagree"
        case .noTrace(let why):
            return "not a golden update-policy trace (\(why)): pass a release's golden_vectors.json"
        case .trainingSize(let expected, let got):
            return "task A trains on \(got) rows here, on \(expected) in the golden trace: the held-out split disagrees"
        }
    }
}

/// The Linux UpdateEngine: Core ML's updates cannot run here, so task A's held-out losses and
/// held-out errors are replayed from the trace the Python runtime recorded, while the policy's
/// decisions (row order, held-out rows, when to cancel, the best epoch, the acceptance check, which
/// epoch count to refit with) are this package's own. With `base`, epoch 0's loss and errors are
/// computed by the spec interpreter rather than read from the trace. An older trace records no
/// errors: each epoch then reports none (its policy has no acceptance check to use them). Each run of
/// task A replays the trace's next turn. It is the k-NN candidate's engine too: each turn's k-NN
/// errors computed by the spec interpreter with `knn` (the k-NN personal model), else replayed.
public final class GoldenTraceEngine: UpdateEngine, KNNEngine {
    /// The epochs task B would run, or the rows the k-NN model would hold: there is no model to return.
    public typealias Personal = Int
    public let trace: PolicyTrace
    let base: TandemPredictor?
    let knn: InterpretedKNNEngine?
    let turns: [TraceTurn]
    var turn = 0  // the run of task A being replayed
    var knnTurn = 0  // the run of task A whose k-NN candidate is being judged

    public init(trace: PolicyTrace, base: TandemPredictor? = nil, knn: InterpretedKNNEngine? = nil) {
        self.trace = trace
        self.base = base
        self.knn = knn
        self.turns = trace.turns
    }

    public func baseCheck(heldOut: LabelledRows) throws -> HeldOutCheck {
        guard let base = base else { return try recorded(0) }
        return try HeldOutLoss.check(base, heldOut)
    }

    /// Without `base` there is no model to run: the rows the trace records as skipped are replayed
    /// (an older trace records none, so every finite row counts as usable).
    public func baseOverflowRows(_ rows: [[Double]]) throws -> [Int] {
        if let base = base { return try base.overflowRows(rows) }
        let recorded = Set((trace.skipped ?? []).filter(trace.inputs.indices.contains).map { trace.inputs[$0] })
        return rows.indices.filter { recorded.contains(rows[$0]) }
    }

    /// This turn's loss and errors after `epoch` epochs (no errors when the trace records none).
    func recorded(_ epoch: Int) throws -> HeldOutCheck {
        guard turn < turns.count else { throw TraceReplayError.noTurn(turns.count) }
        let t = turns[turn]
        return HeldOutCheck(loss: epoch < t.holdoutLosses.count ? t.holdoutLosses[epoch] : .nan,
                            errors: epoch < t.holdoutErrors.count ? t.holdoutErrors[epoch] : [])
    }

    public func update(training: LabelledRows, epochs: Int, settings: UpdateSettings, heldOut: LabelledRows?,
                       onEpochEnd: @escaping (Int, HeldOutCheck) -> Bool) throws -> Int? {
        guard heldOut != nil else { return epochs }  // task B: nothing recorded per epoch
        guard turn < turns.count else { throw TraceReplayError.noTurn(turns.count) }
        defer { turn += 1 }
        let expected = trace.order.count - turns[turn].holdout.count  // the rows fed: the inputs less those skipped
        guard training.count == expected else { throw TraceReplayError.trainingSize(expected: expected, got: training.count) }
        for epoch in 1...max(epochs, 1) {
            guard epoch < turns[turn].holdoutLosses.count else { throw TraceReplayError.traceEnds(epoch: epoch) }
            if onEpochEnd(epoch, try recorded(epoch)) { return nil }
        }
        return nil
    }

    /// This turn's k-NN errors: computed with `knn`, else the trace's.
    public func heldOutErrors(training: LabelledRows, heldOut: LabelledRows) throws -> [Double] {
        defer { knnTurn += 1 }
        if let knn = knn { return try knn.heldOutErrors(training: training, heldOut: heldOut) }
        guard knnTurn < turns.count else { throw TraceReplayError.noTurn(turns.count) }
        guard let recorded = turns[knnTurn].knn else { throw TraceReplayError.noKNN(turn: knnTurn) }
        return recorded.errors
    }

    public func fit(_ training: LabelledRows) throws -> Int { training.count }
}

/// The loss the app watches at each epoch's end: cross-entropy (probabilities clipped at 1e-300,
/// as update_policy.py), or a regressor's mean squared error; and each held-out row's error, which
/// the acceptance check compares between the base and the best epoch (update_policy.py's
/// `row_errors`). One prediction serves both.
public enum HeldOutLoss {
    public static func of(_ model: TandemPredictor, _ rows: LabelledRows) throws -> Double {
        try check(model, rows).loss
    }

    /// The held-out loss and each row's error of `model` on `rows`.
    public static func check(_ model: TandemPredictor, _ rows: LabelledRows) throws -> HeldOutCheck {
        let predictions = try model.predict(rows.rows)
        switch rows.targets {
        case .classes(let labels):
            var total = 0.0
            for (p, label) in zip(predictions.probabilities, labels) {
                guard let k = predictions.classLabels.firstIndex(of: label) else {
                    throw ModelRuntimeError.missingOutput("a probability for class '\(label)'")
                }
                total += -log(max(p[k], 1e-300))
            }
            return HeldOutCheck(loss: total / Double(labels.count),
                                errors: classErrors(predictions.probabilities, classLabels: predictions.classLabels, labels: labels))
        case .values(let targets):
            let values = predictions.values.map { $0.first ?? .nan }
            let differences = zip(values, targets).map { $0 - $1 }
            return HeldOutCheck(loss: differences.map { $0 * $0 }.reduce(0, +) / Double(targets.count),
                                errors: valueErrors(values, targets: targets))
        }
    }

    /// A classifier's row errors: 0 when the class with the highest probability (the first maximum
    /// on a tie; NaN counts as the maximum, as numpy's argmax) is the label, else 1.
    public static func classErrors(_ probabilities: [[Double]], classLabels: [String], labels: [String]) -> [Double] {
        zip(probabilities, labels).map { p, label in
            guard let k = argmax(p), k < classLabels.count else { return 1 }
            return classLabels[k] == label ? 0 : 1
        }
    }

    /// A regressor's row errors: |prediction - target| (NaN stays NaN: it counts neither way).
    public static func valueErrors(_ values: [Double], targets: [Double]) -> [Double] {
        zip(values, targets).map { abs($0 - $1) }
    }

    /// numpy's argmax: the first maximum, the first NaN when there is one; nil for an empty row.
    static func argmax(_ row: [Double]) -> Int? {
        if let nan = row.firstIndex(where: { $0.isNaN }) { return nan }
        guard var best = row.indices.first else { return nil }
        for i in row.indices where row[i] > row[best] { best = i }
        return best
    }
}
