// tandem-device update-policy --golden golden_vectors.json [--model model.mlmodel] [--knn-model personal_knn.mlmodel]
//                             [--engine replay|interpreter]
// Runs a release's update-policy trace through TandemModel's policy (its own row order, held-out
// split, cancellation, best epoch, acceptance check and choice of epochs) and reports each decision
// as JSON. The update itself:
//   replay       the held-out losses and row errors per epoch come from the trace (Core ML cannot
//                run on Linux); with --model the base's are recomputed by the spec interpreter;
//   interpreter  TandemKit computes every update step (needs --model); the losses per epoch and
//                the personal model's outputs are compared with the trace too.
// Compared with the trace: row order, held-out rows, epochs, epochs run, and (a trace from a release
// with the acceptance check) the best epoch, the acceptance (net, needed, accepted) and each held-out
// row's error per epoch; with holdout_folds > 1, the same for every run of task A ("turns"). A policy
// with knn_neighbors has the k-NN candidate too: with --knn-model (the release's personal_knn.mlmodel)
// the spec interpreter computes its held-out errors, else replay reads them from the trace (the
// interpreter engine needs it); its errors and check per turn, its verdict and the method chosen are
// compared as well. Exit 1 when the policy disagrees with the trace.
import Foundation
import TandemKit

func updatePolicyCommand(_ args: [String]) throws -> Int32 {
    let options = try ModelCommandArguments(args, valued: ["--golden", "--model", "--knn-model", "--engine"])
    let trace = try PolicyTrace.load(try Data(contentsOf: try options.file("--golden")))
    let base: InterpretedModel? = try options.optional("--model").map { _ in try InterpretedModel(contentsOf: try options.file("--model")) }
    let knn: InterpretedKNNEngine? = try options.optional("--knn-model").map { _ in
        try InterpretedKNNEngine(contentsOf: try options.file("--knn-model"))
    }
    let engineName = options.optional("--engine") ?? "replay"
    var checks: [(String, Bool)] = []
    var report: [(String, JSONOut)] = []
    let holdoutLosses: [Double], decisions: [EpochDecision]
    switch engineName {
    case "replay":
        let engine = GoldenTraceEngine(trace: trace, base: base, knn: knn)
        let outcome = try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy, engine: engine, knn: engine)
        checks += policyChecks(outcome, trace)
        report += summary(outcome, trace)
        (holdoutLosses, decisions) = (outcome.holdoutLosses, outcome.decisions)
    case "interpreter":
        guard let base = base else { throw ModelCommandError("--engine interpreter needs --model FILE") }
        if trace.policy.knnNeighbors != nil && knn == nil {
            throw ModelCommandError("the policy has knn_neighbors: --engine interpreter needs --knn-model FILE (the release's personal_knn.mlmodel)")
        }
        let outcome = try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy,
                                                         engine: try InterpretedUpdateEngine(base: base), knn: knn)
        checks += policyChecks(outcome, trace)
        report += summary(outcome, trace)
        let mineLosses = outcome.turns.map(\.holdoutLosses), theirLosses = trace.turns.map(\.holdoutLosses)
        let worstLoss = zip(mineLosses.joined(), theirLosses.joined()).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        checks.append(("holdout_losses", mineLosses.map(\.count) == theirLosses.map(\.count) && worstLoss <= 1e-9))
        let personal: TandemPredictor = outcome.personal ?? base
        let skipped = Set(outcome.skippedRows)  // the rows the policy skipped have no outputs to compare
        let got = try personal.predict(trace.inputs.indices.filter { !skipped.contains($0) }.map { trace.inputs[$0] })
        let mine = personal.kind == .classifier ? got.probabilities.flatMap { $0 } : got.values.map { $0.first ?? .nan }
        let theirs = trace.probabilitiesAfter?.flatMap { $0 } ?? trace.predictionsAfter ?? []
        let worstOutput = zip(mine, theirs).map { abs($0 - $1) }.max() ?? .nan
        checks.append(("personal_outputs", mine.count == theirs.count && worstOutput <= 1e-6))
        report += [("max_holdout_loss_difference", .number(worstLoss)), ("max_personal_output_difference", .number(worstOutput))]
        (holdoutLosses, decisions) = (outcome.holdoutLosses, outcome.decisions)
    default:
        throw ModelCommandError("--engine must be replay or interpreter, got '\(engineName)'")
    }
    if base != nil, let mine = holdoutLosses.first, let theirs = trace.holdoutLosses.first {
        checks.append(("base_loss", abs(mine - theirs) <= 1e-9 * max(1, abs(theirs))))
    }
    report += [
        ("engine", .string(engineName)),
        ("accept_margin", trace.policy.acceptMargin.map(JSONOut.number) ?? .null),
        ("decisions", .array(decisions.map { d in
            JSONOut.object([("epoch", .int(d.epoch)), ("held_out_loss", .number(d.heldOutLoss)),
                            ("best_epoch", .int(d.bestEpoch)), ("cancel", .bool(d.cancel))])
        })),
        ("checks", .object(checks.map { ($0.0, .bool($0.1)) })),
        ("matches", .bool(checks.allSatisfy(\.1))),
    ]
    print(JSONOut.object(report).text)
    let failed = checks.filter { !$0.1 }.map(\.0)
    if !failed.isEmpty {
        printError("the update policy disagrees with the golden trace on: \(failed.joined(separator: ", "))")
        return 1
    }
    return 0
}

private func policyChecks<P>(_ outcome: PolicyOutcome<P>, _ trace: PolicyTrace) -> [(String, Bool)] {
    var checks = [("order", outcome.order == trace.order), ("holdout", outcome.holdout == trace.holdout),
                  ("epochs", outcome.epochs == trace.epochs),
                  ("epochs_run", outcome.holdoutLosses.count == trace.holdoutLosses.count)]
    if let skipped = trace.skipped { checks.append(("skipped", outcome.skippedRows == skipped)) }
    guard let bestEpoch = trace.bestEpoch else { return checks }  // a release from before the acceptance check
    checks += [("best_epoch", outcome.bestEpoch == bestEpoch),
               ("acceptance", sameVerdict(outcome.acceptance, trace.acceptance)),
               ("holdout_errors", sameErrors(outcome.holdoutErrors, trace.holdoutErrors))]
    let mine = outcome.turns, theirs = trace.turns
    checks.append(("turns", mine.count == theirs.count && zip(mine, theirs).allSatisfy { m, t in
        m.holdout == t.holdout && m.holdoutLosses.count == t.holdoutLosses.count && m.bestEpoch == t.bestEpoch
            && sameVerdict(m.acceptance, t.acceptance) && sameErrors(m.holdoutErrors, t.holdoutErrors)
    }))
    guard let method = trace.method else { return checks }  // a trace from before the k-NN candidate
    checks += [("method", outcome.method == method), ("knn", sameVerdict(outcome.knn, trace.knn)),
               ("knn_turns", mine.count == theirs.count && zip(mine, theirs).allSatisfy { m, t in
                   m.knn?.errors == t.knn?.errors && sameVerdict(m.knn?.acceptance, t.knn?.acceptance)
               })]
    return checks
}

private func sameVerdict(_ mine: Acceptance?, _ theirs: Acceptance?) -> Bool {
    mine?.net == theirs?.net && mine?.needed == theirs?.needed && mine?.accepted == theirs?.accepted
}

/// Each held-out row's error after each epoch: a classifier's 0/1 exactly, a regressor's absolute
/// error within 1e-9 (relative beyond 1), as the losses.
private func sameErrors(_ mine: [[Double]], _ theirs: [[Double]]) -> Bool {
    func close(_ a: Double, _ b: Double) -> Bool { a == b || abs(a - b) <= 1e-9 * max(1.0, abs(b)) }
    guard mine.count == theirs.count else { return false }
    for (m, t) in zip(mine, theirs) {
        guard m.count == t.count else { return false }
        for (a, b) in zip(m, t) where !close(a, b) { return false }
    }
    return true
}

private func acceptanceJSON(_ a: Acceptance?) -> JSONOut {
    guard let a = a else { return .null }
    return .object([("better", .int(a.better)), ("worse", .int(a.worse)), ("net", .int(a.net)),
                    ("needed", .int(a.needed)), ("accepted", .bool(a.accepted))])
}

private func summary<P>(_ outcome: PolicyOutcome<P>, _ trace: PolicyTrace) -> [(String, JSONOut)] {
    [("epochs", .int(outcome.epochs)), ("golden_epochs", .int(trace.epochs)), ("kept_base", .bool(outcome.keptBase)),
     ("task_a_epochs", .int(max(outcome.holdoutLosses.count - 1, 0))), ("holdout", .ints(outcome.holdout)),
     ("order", .ints(outcome.order)), ("base_loss", outcome.holdoutLosses.first.map(JSONOut.number) ?? .null),
     ("golden_base_loss", trace.holdoutLosses.first.map(JSONOut.number) ?? .null),
     ("best_epoch", .int(outcome.bestEpoch)), ("golden_best_epoch", trace.bestEpoch.map(JSONOut.int) ?? .null),
     ("acceptance", acceptanceJSON(outcome.acceptance)), ("golden_acceptance", acceptanceJSON(trace.acceptance)),
     ("holdout_errors", .matrix(outcome.holdoutErrors)),
     ("turns", .array(outcome.turns.map { t in
         JSONOut.object([("holdout", .ints(t.holdout)), ("task_a_epochs", .int(max(t.holdoutLosses.count - 1, 0))),
                         ("best_epoch", .int(t.bestEpoch)), ("acceptance", acceptanceJSON(t.acceptance))]
                        + (t.knn.map { [("knn", JSONOut.object([("errors", .numbers($0.errors)),
                                                                 ("acceptance", acceptanceJSON($0.acceptance))]))] } ?? []))
     })),
     ("method", .string(outcome.method.rawValue)), ("golden_method", trace.method.map { .string($0.rawValue) } ?? .null),
     ("knn", acceptanceJSON(outcome.knn)), ("golden_knn", acceptanceJSON(trace.knn)),
     ("skipped_rows", .ints(outcome.skippedRows)), ("note", .string(outcome.note))]
}
