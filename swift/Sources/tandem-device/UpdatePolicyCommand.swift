// tandem-device update-policy --golden golden_vectors.json [--model model.mlmodel]
// Replays a release's update-policy trace through TandemModel's policy (its own row order,
// held-out split, cancellation and choice of epochs; the held-out losses per epoch come from the
// trace, since Core ML's update cannot run on Linux) and reports each decision as JSON. With
// --model the base's held-out loss is recomputed by the spec interpreter. Exit 1 when the policy
// disagrees with the trace.
import Foundation
import TandemKit

func updatePolicyCommand(_ args: [String]) throws -> Int32 {
    let options = try ModelCommandArguments(args, valued: ["--golden", "--model"])
    let trace = try PolicyTrace.load(try Data(contentsOf: try options.file("--golden")))
    let base: InterpretedModel? = try options.optional("--model").map { _ in try InterpretedModel(contentsOf: try options.file("--model")) }
    let outcome = try UpdatePolicyRunner.personalize(trace.data, policy: trace.policy,
                                                     engine: GoldenTraceEngine(trace: trace, base: base))
    let baseLoss = outcome.holdoutLosses.first
    let goldenBaseLoss = trace.holdoutLosses.first
    var checks: [(String, Bool)] = [
        ("order", outcome.order == trace.order),
        ("holdout", outcome.holdout == trace.holdout),
        ("epochs", outcome.epochs == trace.epochs),
        ("epochs_run", outcome.holdoutLosses.count == trace.holdoutLosses.count),
    ]
    if base != nil, let mine = baseLoss, let theirs = goldenBaseLoss {
        checks.append(("base_loss", abs(mine - theirs) <= 1e-9 * max(1, abs(theirs))))
    }
    let decisions = outcome.decisions.map { d in
        JSONOut.object([("epoch", .int(d.epoch)), ("held_out_loss", .number(d.heldOutLoss)),
                        ("best_epoch", .int(d.bestEpoch)), ("cancel", .bool(d.cancel))])
    }
    let report: [(String, JSONOut)] = [
        ("epochs", .int(outcome.epochs)),
        ("golden_epochs", .int(trace.epochs)),
        ("kept_base", .bool(outcome.keptBase)),
        ("task_a_epochs", .int(max(outcome.holdoutLosses.count - 1, 0))),
        ("holdout", .ints(outcome.holdout)),
        ("order", .ints(outcome.order)),
        ("base_loss", baseLoss.map(JSONOut.number) ?? .null),
        ("golden_base_loss", goldenBaseLoss.map(JSONOut.number) ?? .null),
        ("skipped_rows", .ints(outcome.skippedRows)),
        ("decisions", .array(decisions)),
        ("note", .string(outcome.note)),
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
