// The app's personalization policy around an on-device update: the Swift twin of
// tandem/device/update_policy.py. With a user's labelled rows, in capture order:
//  1. hold out the latest 1/holdoutEvery of each class's rows (when every class has at least
//     minPerClass; otherwise skip to 4 with fallbackEpochs);
//  2. task A: update the base on the rest, at most maxEpochs; at each epoch's end the held-out loss
//     and each held-out row's error are measured (epoch 0: the base) and the task is cancelled
//     `patience` epochs after the best; the best epoch E is the first minimum of the loss;
//  3. the acceptance check: on the held-out rows, the rows epoch E got better than the base minus
//     the rows it got worse (a classifier: wrong -> right minus right -> wrong, the argmax class
//     with the first maximum on a tie; a regressor: the absolute error fell minus rose, by more
//     than 1e-12) must reach max(1, ceil(acceptMargin x held-out rows)), or the base is kept;
//     acceptMargin nil (a release from before the check) skips it. E = 0 keeps the base too;
//  4. task B: update the base on all rows for E epochs.
// With holdoutFolds k > 1 every row is held out once: each class's rows in capture order are cut
// into k contiguous blocks (numpy's array_split), steps 2-3 run once per block (a turn, each at its
// own best epoch), the net counts are summed and judged against all rows, and E is the lower median
// of the turns' best epochs.
// With knnNeighbors (a classifier), the release's k-NN personal model (personal_knn.mlmodel: the
// network's embedding, then an updatable k-NN) is a second candidate, judged on the same held-out
// rows: given each turn's other rows (in task A's feed order), its held-out rows right or wrong
// against the base's, summed over the turns against the same rows needed (at least one net row even
// without a margin). The user gets whichever passing candidate has the larger net count (a tie: the
// fine-tune), the k-NN one holding all labelled rows; neither passing keeps the base.
// Rows are fed interleaved over classes with shuffling off, so a phone reproduces every step.
// The update itself is an UpdateEngine: Core ML's MLUpdateTask on Apple platforms, a replay of a
// release's golden trace on Linux; the k-NN candidate a KNNEngine (MLUpdateTask on the k-NN
// pipeline, or the spec interpreter, which computes it exactly).
import Foundation

public struct UpdatePolicy: Codable, Equatable {
    public var learningRate = 0.01
    public var miniBatchSize = 8
    public var maxEpochs = 80
    public var patience = 10
    public var holdoutEvery = 3
    public var minPerClass = 3
    public var fallbackEpochs = 30
    /// The share of the held-out rows epoch E must get right (better) on net; nil: no acceptance
    /// check (task B whenever E > 0). A policy JSON without "accept_margin" (a release from before
    /// the check) decodes to nil, as does an explicit null.
    public var acceptMargin: Double? = 0.1
    /// 1: task A holds out the latest rows once; k > 1: every row once, in k turns. A policy JSON
    /// without "holdout_folds" (a release from before the turns) decodes to 1.
    public var holdoutFolds = 1
    /// k: the release's k-NN personal model is a second candidate (a classifier only); nil (absent
    /// or null in the JSON, and left out when encoded): the fine-tune alone.
    public var knnNeighbors: Int?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case learningRate = "learning_rate", miniBatchSize = "mini_batch_size", maxEpochs = "max_epochs", patience
        case holdoutEvery = "holdout_every", minPerClass = "min_per_class", fallbackEpochs = "fallback_epochs"
        case acceptMargin = "accept_margin", holdoutFolds = "holdout_folds", knnNeighbors = "knn_neighbors"
    }

    /// Refuses a policy with a key this TandemKit does not know: a release made for a newer TandemKit
    /// runs a rule this one cannot, and running the rest of it silently would not be the rule the
    /// release's golden trace proved. The app keeps its base model instead (docs/ios.md).
    public init(from decoder: Decoder) throws {
        let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
            .filter { CodingKeys(stringValue: $0) == nil }.sorted()
        guard unknown.isEmpty else { throw PolicyNeedsNewerKit(keys: unknown) }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        learningRate = try c.decode(Double.self, forKey: .learningRate)
        miniBatchSize = try c.decode(Int.self, forKey: .miniBatchSize)
        maxEpochs = try c.decode(Int.self, forKey: .maxEpochs)
        patience = try c.decode(Int.self, forKey: .patience)
        holdoutEvery = try c.decode(Int.self, forKey: .holdoutEvery)
        minPerClass = try c.decode(Int.self, forKey: .minPerClass)
        fallbackEpochs = try c.decode(Int.self, forKey: .fallbackEpochs)
        acceptMargin = try c.decodeIfPresent(Double.self, forKey: .acceptMargin)  // absent or null: no check
        holdoutFolds = try c.decodeIfPresent(Int.self, forKey: .holdoutFolds) ?? 1
        knnNeighbors = try c.decodeIfPresent(Int.self, forKey: .knnNeighbors)
    }

    /// As update_policy.py's `as_dict`: every key, "accept_margin": null when there is no check;
    /// "knn_neighbors" only with a k-NN candidate (a kit from before it would refuse the key).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(learningRate, forKey: .learningRate)
        try c.encode(miniBatchSize, forKey: .miniBatchSize)
        try c.encode(maxEpochs, forKey: .maxEpochs)
        try c.encode(patience, forKey: .patience)
        try c.encode(holdoutEvery, forKey: .holdoutEvery)
        try c.encode(minPerClass, forKey: .minPerClass)
        try c.encode(fallbackEpochs, forKey: .fallbackEpochs)
        try c.encode(acceptMargin, forKey: .acceptMargin)
        try c.encode(holdoutFolds, forKey: .holdoutFolds)
        try c.encodeIfPresent(knnNeighbors, forKey: .knnNeighbors)
    }
}

/// A release's update policy has keys this TandemKit does not know (thrown as is through JSONDecoder).
public struct PolicyNeedsNewerKit: Error, Equatable, CustomStringConvertible {
    public let keys: [String]
    public var description: String {
        "the update policy has \(keys.joined(separator: ", ")), which this TandemKit does not know: the release needs a newer TandemKit"
    }
}

/// Any key of a JSON object (to find the keys a decoder does not know).
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// What the model learns to output: class names (a classifier) or values (a regressor).
public enum Targets: Equatable {
    case classes([String])
    case values([Double])

    public var count: Int {
        switch self {
        case .classes(let c): return c.count
        case .values(let v): return v.count
        }
    }

    public subscript(_ rows: [Int]) -> Targets {
        switch self {
        case .classes(let c): return .classes(rows.map { c[$0] })
        case .values(let v): return .values(rows.map { v[$0] })
        }
    }

    /// Class names; every regression row is one group (as update_policy.py's `_is_numeric`).
    var groups: [String] {
        switch self {
        case .classes(let c): return c
        case .values(let v): return Array(repeating: "", count: v.count)
        }
    }
}

public struct LabelledRows: Equatable {
    public var rows: [[Double]]
    public var targets: Targets

    public init(rows: [[Double]], targets: Targets) {
        self.rows = rows
        self.targets = targets
    }

    public var count: Int { rows.count }

    public subscript(_ indices: [Int]) -> LabelledRows {
        LabelledRows(rows: indices.map { rows[$0] }, targets: targets[indices])
    }
}

public struct UpdateSettings: Equatable {
    public var learningRate: Double
    public var miniBatchSize: Int
    public var shuffle: Bool

    public init(learningRate: Double, miniBatchSize: Int, shuffle: Bool = false) {
        self.learningRate = learningRate
        self.miniBatchSize = miniBatchSize
        self.shuffle = shuffle
    }
}

/// What the progress handler measures on the held-out rows: the loss (cross-entropy, or a
/// regressor's mean squared error) and each row's error (a classifier: 0 when the argmax class is
/// the label, else 1; a regressor: |prediction - target|), in the held-out rows' order.
public struct HeldOutCheck: Equatable {
    public var loss: Double
    public var errors: [Double]

    public init(loss: Double, errors: [Double]) {
        self.loss = loss
        self.errors = errors
    }
}

/// An engine saw a non-finite weight or loss in `epoch`: the policy keeps what came before.
public struct UpdateDiverged: Error, CustomStringConvertible, Equatable {
    public var epoch: Int
    public init(epoch: Int) { self.epoch = epoch }
    public var description: String { "the update diverged in epoch \(epoch) (a non-finite weight or loss)" }
}

/// One on-device update. `baseCheck` measures the base on the held-out rows ("epoch 0"). `update`
/// runs at most `epochs` epochs on `training` and, after each one, calls `onEpochEnd(epoch, check)`
/// (the loss and each row's error on `heldOut`; without it, the epoch's training loss when the
/// engine knows it, and no errors); returning true cancels the task. An engine that sees a
/// non-finite weight or loss throws `UpdateDiverged`: the policy then keeps what came before.
/// `baseOverflowRows` is the rows (all finite) on which the base's outputs are not finite (1e308
/// overflows the network): the policy skips them before any update, as runtime.py's `usable_rows`.
public protocol UpdateEngine {
    associatedtype Personal
    func baseCheck(heldOut: LabelledRows) throws -> HeldOutCheck
    func baseOverflowRows(_ rows: [[Double]]) throws -> [Int]
    func update(training: LabelledRows, epochs: Int, settings: UpdateSettings, heldOut: LabelledRows?,
                onEpochEnd: @escaping (Int, HeldOutCheck) -> Bool) throws -> Personal?
}

/// The k-NN candidate (the release's personal_knn.mlmodel, a pipeline ending in an updatable k-NN):
/// fitted by storing rows, with no epochs or loss. `fit` is the model holding `training`, stored in
/// the given order (what MLUpdateTask does to a k-NN); `heldOutErrors` is each held-out row's error
/// (0: the label it predicts is the row's, else 1) of the model holding `training`.
public protocol KNNEngine {
    associatedtype Personal
    func fit(_ training: LabelledRows) throws -> Personal
    func heldOutErrors(training: LabelledRows, heldOut: LabelledRows) throws -> [Double]
}

/// The type of "no k-NN engine" (it has no values): the policy without a k-NN candidate.
enum NoKNNEngine<Personal>: KNNEngine {
    func fit(_ training: LabelledRows) throws -> Personal { switch self {} }
    func heldOutErrors(training: LabelledRows, heldOut: LabelledRows) throws -> [Double] { switch self {} }
}

/// The k-NN candidate cannot be judged: the policy has knn_neighbors but no k-NN engine was given,
/// the targets are a regressor's, or the engine's errors do not cover the held-out rows.
public struct KNNCandidateUnavailable: Error, Equatable, CustomStringConvertible {
    public let description: String
}

/// What the user got: the base, the fine-tune (task B) or the k-NN personal model.
public enum PersonalizationMethod: String, Codable, Equatable {
    case base, fineTune = "fine_tune", knn
}

/// The acceptance check on epoch E (update_policy.py's `acceptance`): the held-out rows it got
/// better on than the base, those it got worse on, and the net count needed.
public struct Acceptance: Codable, Equatable {
    public var better: Int
    public var worse: Int
    public var net: Int
    public var needed: Int
    public var accepted: Bool

    public init(better: Int, worse: Int, net: Int, needed: Int, accepted: Bool) {
        (self.better, self.worse, self.net, self.needed, self.accepted) = (better, worse, net, needed, accepted)
    }
}

/// An engine's held-out errors do not cover the held-out rows: the acceptance check cannot run.
public struct HeldOutErrorsMissing: Error, CustomStringConvertible, Equatable {
    public var epoch: Int
    public var expected: Int
    public var got: Int
    public var description: String {
        "the update engine reported \(got) held-out errors after epoch \(epoch), for \(expected) held-out rows: the acceptance check cannot run"
    }
}

/// One epoch's end in task A, as the progress handler saw it.
public struct EpochDecision: Codable, Equatable {
    public var epoch: Int
    public var heldOutLoss: Double
    public var bestEpoch: Int
    public var cancel: Bool
}

/// The k-NN candidate on one turn (update_policy.py's `knn_turn`): each held-out row's error and the
/// check against the base's errors (epoch 0).
public struct KNNCheck: Codable, Equatable {
    public var errors: [Double]
    public var acceptance: Acceptance

    public init(errors: [Double], acceptance: Acceptance) {
        (self.errors, self.acceptance) = (errors, acceptance)
    }
}

/// One run of task A: its held-out rows (in the reordered numbering), the held-out loss and each
/// held-out row's error after each epoch (index 0: the base), the progress handler's decisions, its
/// best epoch and the acceptance check there; with a k-NN candidate, its check on the same rows.
public struct PolicyTurn: Equatable {
    public var holdout: [Int] = []
    public var holdoutLosses: [Double] = []
    public var holdoutErrors: [[Double]] = []
    public var decisions: [EpochDecision] = []
    public var bestEpoch = 0
    public var acceptance = Acceptance(better: 0, worse: 0, net: 0, needed: 1, accepted: false)
    public var knn: KNNCheck?
}

public struct PolicyOutcome<Personal> {
    public var order: [Int] = []  // the row order fed (indices into the screened rows)
    public var turns: [PolicyTurn] = []  // each run of task A (one unless holdoutFolds > 1; none: the fallback)
    public var bestEpoch = 0  // E: task A's first minimum of the held-out loss (k turns: the lower median of theirs)
    public var acceptance: Acceptance?  // the check on E, over all turns (nil when task A did not run or E = 0)
    public var knn: Acceptance?  // the k-NN candidate's check over all turns (nil without one, or without turns)
    public var method = PersonalizationMethod.base  // what the user got
    public var epochs = 0  // of task B (0: the base or the k-NN model)
    public var skippedRows: [Int] = []  // rows refused before any update (non-finite features or targets, base overflow)
    public var note = ""  // why the base was kept, or why the k-NN model won
    public var personal: Personal?  // the fine-tuned or the k-NN model (`method`); nil: the base

    public var keptBase: Bool { method == .base }
    // The first turn's, as before there were turns.
    public var holdout: [Int] { turns.first?.holdout ?? [] }
    public var holdoutLosses: [Double] { turns.first?.holdoutLosses ?? [] }
    public var holdoutErrors: [[Double]] { turns.first?.holdoutErrors ?? [] }
    public var decisions: [EpochDecision] { turns.first?.decisions ?? [] }
}

public enum UpdatePolicyRunner {
    /// Round-robin over the classes (sorted by code point, as numpy sorts), each in capture order; a
    /// regressor's rows keep their order.
    public static func interleave(_ targets: Targets) -> [Int] {
        guard case .classes(let labels) = targets else { return Array(0..<targets.count) }
        var queues = sortedClasses(labels).map { c in labels.indices.filter { labels[$0] == c }[...] }
        var order: [Int] = []
        while queues.contains(where: { !$0.isEmpty }) {
            for q in queues.indices where !queues[q].isEmpty { order.append(queues[q].removeFirst()) }
        }
        return order
    }

    /// The last ceil(count / holdoutEvery) rows of each class (a regressor: of all rows); none when
    /// a class has fewer than minPerClass rows or holdoutEvery < 2.
    public static func holdoutRows(_ targets: Targets, _ policy: UpdatePolicy) -> [Int] {
        let groups = targets.groups
        let classes = sortedClasses(groups)
        let members = classes.map { c in groups.indices.filter { groups[$0] == c } }
        guard policy.holdoutEvery >= 2, let fewest = members.map(\.count).min(), fewest >= policy.minPerClass else { return [] }
        let held = members.flatMap { rows in rows.suffix((rows.count + policy.holdoutEvery - 1) / policy.holdoutEvery) }
        return held.sorted()
    }

    /// The held-out rows of each run of task A: holdoutFolds 1, `holdoutRows` (no turn when it is
    /// empty); k > 1, per class (a regressor: all rows) in capture order, k contiguous blocks, the
    /// first count % k of them one row longer (numpy's array_split); turn t holds out block t of every
    /// class. No turn when a class has fewer than max(k, minPerClass) rows or holdoutEvery < 2.
    public static func holdoutTurns(_ targets: Targets, _ policy: UpdatePolicy) -> [[Int]] {
        let k = policy.holdoutFolds
        guard k > 1 else {
            let rows = holdoutRows(targets, policy)
            return rows.isEmpty ? [] : [rows]
        }
        let groups = targets.groups
        let members = sortedClasses(groups).map { c in groups.indices.filter { groups[$0] == c } }
        guard policy.holdoutEvery >= 2, let fewest = members.map(\.count).min(), fewest >= max(k, policy.minPerClass) else { return [] }
        let blocks: [[ArraySlice<Int>]] = members.map { rows in
            var start = 0
            return (0..<k).map { t in
                let size = rows.count / k + (t < rows.count % k ? 1 : 0)
                defer { start += size }
                return rows[start..<start + size]
            }
        }
        return (0..<k).map { t in blocks.flatMap { $0[t] }.sorted() }
    }

    /// The lower of the two middle values (the middle one for an odd count): an epoch count that ran.
    public static func lowerMedian(_ values: [Int]) -> Int {
        values.sorted()[(values.count - 1) / 2]
    }

    static func sortedClasses(_ labels: [String]) -> [String] {
        Set(labels).sorted { $0.unicodeScalars.map(\.value).lexicographicallyPrecedes($1.unicodeScalars.map(\.value)) }
    }

    /// The first minimum (as numpy's argmin); non-finite losses never count as the best.
    static func bestEpoch(_ losses: [Double]) -> Int {
        var best = 0
        for (i, loss) in losses.enumerated() where loss.isFinite && (!losses[best].isFinite || loss < losses[best]) { best = i }
        return best
    }

    /// Whether epoch E's update is worth shipping: the held-out rows it got better on minus those it
    /// got worse on (beyond a float tolerance of 1e-12) must reach max(1, ceil(margin x rows));
    /// margin nil: always accepted (the counts are still reported, needed is 1).
    public static func acceptance(base: [Double], best: [Double], margin: Double?) -> Acceptance {
        var better = 0, worse = 0
        for (b, e) in zip(base, best) {
            if e < b - 1e-12 { better += 1 }
            if e > b + 1e-12 { worse += 1 }
        }
        let needed = rowsNeeded(margin, of: base.count)
        return Acceptance(better: better, worse: worse, net: better - worse, needed: needed,
                          accepted: margin == nil || better - worse >= needed)
    }

    /// max(1, ceil(margin x rows)); 1 without a margin.
    static func rowsNeeded(_ margin: Double?, of rows: Int) -> Int {
        guard let margin = margin else { return 1 }
        let share = (margin * Double(rows) - 1e-9).rounded(.up)
        // A non-finite or huge margin can never be met (Python's math.ceil would raise on it).
        return share.isNaN || share >= Double(Int.max) ? Int.max : max(1, Int(share))
    }

    /// The acceptance check over all turns (update_policy.py's `verdict`): each turn's rows better
    /// and worse at its own best epoch, summed, against max(1, ceil(margin x all held-out rows)).
    public static func verdict(_ turns: [PolicyTurn], margin: Double?) -> Acceptance {
        let better = turns.map(\.acceptance.better).reduce(0, +), worse = turns.map(\.acceptance.worse).reduce(0, +)
        let needed = rowsNeeded(margin, of: turns.map(\.holdout.count).reduce(0, +))
        return Acceptance(better: better, worse: worse, net: better - worse, needed: needed,
                          accepted: margin == nil || better - worse >= needed)
    }

    /// The k-NN candidate's check over all turns (update_policy.py's `knn_verdict`): as `verdict`, but
    /// it needs one net row even without a margin (it has no held-out loss to have stopped on).
    public static func knnVerdict(_ turns: [PolicyTurn], margin: Double?) -> Acceptance {
        let better = turns.map { $0.knn?.acceptance.better ?? 0 }.reduce(0, +)
        let worse = turns.map { $0.knn?.acceptance.worse ?? 0 }.reduce(0, +)
        let needed = rowsNeeded(margin, of: turns.map(\.holdout.count).reduce(0, +))
        return Acceptance(better: better, worse: worse, net: better - worse, needed: needed, accepted: better - worse >= needed)
    }

    /// Whether the user gets the k-NN model: it passes its check and the fine-tune does not pass (E > 0
    /// and its check accepted, or no check) with a net count at least as large (a tie: the fine-tune).
    public static func prefersKNN(_ knn: Acceptance?, fineTune: Acceptance?, bestEpoch: Int) -> Bool {
        guard let knn = knn, knn.accepted else { return false }
        let fineTunePasses = bestEpoch > 0 && (fineTune?.accepted ?? true)
        return !(fineTunePasses && (fineTune?.net ?? 0) >= knn.net)
    }

    /// Rows holding a non-finite feature, or a non-finite regression target.
    public static func nonFiniteRows(_ data: LabelledRows) -> [Int] {
        data.rows.indices.filter { i in
            if data.rows[i].contains(where: { !$0.isFinite }) { return true }
            if case .values(let v) = data.targets, !v[i].isFinite { return true }
            return false
        }
    }

    /// Rows a model must never see (update_policy.py's `unusable_rows`): `nonFiniteRows`, and rows of
    /// finite features the base overflows on, in row order.
    public static func unusableRows<Engine: UpdateEngine>(_ data: LabelledRows, engine: Engine) throws -> [Int] {
        let finite = data.rows.indices.filter { i in data.rows[i].allSatisfy(\.isFinite) }
        let overflow = finite.isEmpty ? [] : try engine.baseOverflowRows(finite.map { data.rows[$0] }).map { finite[$0] }
        return Set(nonFiniteRows(data)).union(overflow).sorted()
    }

    /// One run of task A with `holdout` held out, cancelled `patience` epochs after the best; its best
    /// epoch and the acceptance check there. Also the divergence that stopped it early, if one did.
    static func taskA<Engine: UpdateEngine>(_ ordered: LabelledRows, holdout: [Int], policy: UpdatePolicy,
                                           settings: UpdateSettings, engine: Engine) throws -> (PolicyTurn, UpdateDiverged?) {
        var turn = PolicyTurn()
        turn.holdout = holdout
        let held = Set(holdout)
        var keep = ordered.rows.indices.filter { !held.contains($0) }
        let heldOut = ordered[holdout]
        let base = try engine.baseCheck(heldOut: heldOut)
        keep = interleave(ordered[keep].targets).map { keep[$0] }
        var losses = [base.loss], errors = [base.errors], decisions: [EpochDecision] = []
        var stopped: UpdateDiverged?
        do {
            _ = try engine.update(training: ordered[keep], epochs: policy.maxEpochs, settings: settings, heldOut: heldOut) { epoch, check in
                let loss = check.loss
                losses.append(loss)
                errors.append(check.errors)
                let best = bestEpoch(losses)
                // A non-finite loss means the update diverged: stop here, keep what came before.
                let cancel = !loss.isFinite || epoch - best >= policy.patience
                decisions.append(EpochDecision(epoch: epoch, heldOutLoss: loss, bestEpoch: best, cancel: cancel))
                return cancel
            }
        } catch let diverged as UpdateDiverged {
            stopped = diverged
        }
        (turn.holdoutLosses, turn.holdoutErrors, turn.decisions) = (losses, errors, decisions)
        turn.bestEpoch = bestEpoch(losses)  // first minimum
        if policy.acceptMargin != nil, turn.bestEpoch > 0 {
            for e in [0, turn.bestEpoch] where errors[e].count != heldOut.count {
                throw HeldOutErrorsMissing(epoch: e, expected: heldOut.count, got: errors[e].count)
            }
        }
        turn.acceptance = acceptance(base: errors[0], best: errors[turn.bestEpoch], margin: policy.acceptMargin)
        return (turn, stopped)
    }

    /// The k-NN candidate on one turn: the model given the turn's other rows (in task A's feed order)
    /// predicts its held-out rows; each row's error, checked against the base's (epoch 0).
    static func knnTurn<KNN: KNNEngine>(_ ordered: LabelledRows, _ turn: PolicyTurn, margin: Double?, knn: KNN) throws -> KNNCheck {
        let held = Set(turn.holdout)
        var keep = ordered.rows.indices.filter { !held.contains($0) }
        keep = interleave(ordered[keep].targets).map { keep[$0] }
        let base = turn.holdoutErrors.first ?? []
        guard base.count == turn.holdout.count else { throw HeldOutErrorsMissing(epoch: 0, expected: turn.holdout.count, got: base.count) }
        let errors = try knn.heldOutErrors(training: ordered[keep], heldOut: ordered[turn.holdout])
        guard errors.count == turn.holdout.count else {
            throw KNNCandidateUnavailable(description: "the k-NN engine reported \(errors.count) held-out errors for "
                                          + "\(turn.holdout.count) held-out rows: its check cannot run")
        }
        return KNNCheck(errors: errors, acceptance: acceptance(base: base, best: errors, margin: margin))
    }

    /// The policy without a k-NN candidate (a policy with knnNeighbors is refused: pass the k-NN engine).
    public static func personalize<Engine: UpdateEngine>(_ data: LabelledRows, policy: UpdatePolicy = UpdatePolicy(),
                                                         engine: Engine) throws -> PolicyOutcome<Engine.Personal> {
        try personalize(data, policy: policy, engine: engine, knn: NoKNNEngine<Engine.Personal>?.none)
    }

    /// The policy; with policy.knnNeighbors, `knn` (the release's k-NN personal model) is the second
    /// candidate and must be given. The outcome's `personal` is the fine-tuned or the k-NN model.
    public static func personalize<Engine: UpdateEngine, KNN: KNNEngine>(
        _ data: LabelledRows, policy: UpdatePolicy = UpdatePolicy(), engine: Engine, knn: KNN?
    ) throws -> PolicyOutcome<Engine.Personal> where KNN.Personal == Engine.Personal {
        let candidate: KNN?
        if let k = policy.knnNeighbors {
            guard let knn = knn else {
                throw KNNCandidateUnavailable(description: "the update policy has knn_neighbors \(k): pass the release's k-NN "
                                              + "personal model (personal_knn.mlmodel) to the policy")
            }
            if case .values = data.targets {
                throw KNNCandidateUnavailable(description: "the k-NN candidate needs a classifier (Core ML's k-NN predicts "
                                              + "classes): set knn_neighbors to null for a regressor")
            }
            candidate = knn
        } else {
            candidate = nil
        }
        var outcome = PolicyOutcome<Engine.Personal>()
        outcome.skippedRows = try unusableRows(data, engine: engine)
        let skipped = Set(outcome.skippedRows)
        let usable = data[data.rows.indices.filter { !skipped.contains($0) }]
        guard usable.count > 0 else {  // update_policy.py's notes, word for word
            outcome.note = (data.count == 0 ? "no labelled rows" : "all \(data.count) labelled rows are unusable (NaN, inf or overflow)")
                + ": the base is kept"
            return outcome
        }
        outcome.order = interleave(usable.targets)
        let ordered = usable[outcome.order]
        let settings = UpdateSettings(learningRate: policy.learningRate, miniBatchSize: policy.miniBatchSize)
        for holdout in holdoutTurns(ordered.targets, policy) {
            var (turn, diverged) = try taskA(ordered, holdout: holdout, policy: policy, settings: settings, engine: engine)
            if let knn = candidate { turn.knn = try knnTurn(ordered, turn, margin: policy.acceptMargin, knn: knn) }
            outcome.turns.append(turn)
            if outcome.note.isEmpty, let diverged = diverged { outcome.note = "\(diverged): task A stopped there" }
        }
        if outcome.turns.isEmpty {
            outcome.epochs = policy.fallbackEpochs
        } else {
            let best = lowerMedian(outcome.turns.map(\.bestEpoch))
            outcome.bestEpoch = best
            outcome.epochs = best
            if best == 0 {
                if outcome.note.isEmpty { outcome.note = "no epoch beat the base on the held-out rows: the base is kept" }
            } else {
                let check = verdict(outcome.turns, margin: policy.acceptMargin)
                outcome.acceptance = check
                if !check.accepted {
                    outcome.epochs = 0
                    let judged = outcome.turns.count == 1 ? "epoch \(best)" : "\(outcome.turns.count) turns at their best epochs"
                    outcome.note = "\(judged) did better than the base on \(check.net) more held-out rows than worse, "
                        + "\(check.needed) needed: the base is kept"
                }
            }
        }
        if let knn = candidate, !outcome.turns.isEmpty {
            let check = knnVerdict(outcome.turns, margin: policy.acceptMargin)
            outcome.knn = check
            if prefersKNN(check, fineTune: outcome.acceptance, bestEpoch: outcome.bestEpoch) {
                let fineTune = outcome.bestEpoch > 0 && (outcome.acceptance?.accepted ?? true)
                outcome.note = "the k-NN personal model did better than the base on \(check.net) more held-out rows than worse "
                    + "(\(check.needed) needed)" + (fineTune ? ", the fine-tune on \(outcome.acceptance?.net ?? 0)" : "")
                outcome.epochs = 0
                outcome.personal = try knn.fit(ordered)  // every usable row, interleaved
                outcome.method = .knn
                return outcome
            }
        }
        if outcome.epochs > 0 {
            do {
                outcome.personal = try engine.update(training: ordered, epochs: outcome.epochs, settings: settings,
                                                     heldOut: nil) { _, _ in false }
                outcome.method = .fineTune
            } catch let diverged as UpdateDiverged {
                outcome.personal = nil
                outcome.epochs = 0
                outcome.note = "\(diverged): rolled back to the base"
            }
        }
        return outcome
    }
}
