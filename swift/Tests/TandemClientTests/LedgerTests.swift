import XCTest
@testable import TandemClient

final class LedgerTests: XCTestCase {
    let fx = PolicyFixtures.shared

    /// Basic composition: the window cost Python's `basic_bound` gives; the budget admits
    /// floor(budget / cost) windows, refuses the rest and says so; re-sharing charged windows is free.
    func testRefusesPastTheBudgetAndSaysSo() throws {
        for p in fx.policies {
            let policy = try p.policy()
            var ledger = PrivacyLedger(user: "u1")
            XCTAssertEqual(try PrivacyLedger.basicBound([policy.windowEvents()], delta: policy.delta), p.window_basic_epsilon, accuracy: 1e-12)
            let affordable = p.basic_affordable
            XCTAssertGreaterThan(affordable, 0)
            let ids = (0..<(affordable + 7)).map { "w\($0)" }
            let (allowed, refusal) = try ledger.admit(policy: policy, windowIds: ids)
            XCTAssertEqual(allowed, Array(ids.prefix(affordable)))
            XCTAssertTrue((refusal ?? "").contains("privacy budget reached") && refusal!.contains("7 window(s) not shared"), refusal ?? "nil")
            XCTAssertLessThanOrEqual(try ledger.spent(delta: policy.delta), policy.userBudgetEpsilon + 1e-9)
            // the same windows again: free, and nothing new fits
            let again = try ledger.admit(policy: policy, windowIds: ids)
            XCTAssertEqual(again.allowed, allowed)
            XCTAssertEqual(ledger.charges.count, affordable)
        }
    }

    func testSavedLedgerIsPythonsFormatAndReloads() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("h5-ledger-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let policy = try fx.policies[0].policy()
        var ledger = try PrivacyLedger.load(devicesDirectory: dir, user: "alice")
        ledger.charge(policy: policy, windowIds: ["a", "b", "a"])
        try ledger.save()
        let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: ledger.url!)) as! [String: Any]
        XCTAssertEqual(saved["format"] as? String, "tandem-privacy-ledger/v2")
        XCTAssertEqual((saved["charges"] as? [Any])?.count, 2)
        let reloaded = try PrivacyLedger.load(devicesDirectory: dir, user: "alice")
        XCTAssertEqual(reloaded.charges, ledger.charges)
    }

    func testUnreadableLedgerIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("h5-ledger-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("bob").appendingPathComponent(PrivacyLedger.fileName)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        for text in ["not json", #"{"format": "tandem-privacy-ledger/v9", "user": "bob", "charges": []}"#,
                     #"{"format": "tandem-privacy-ledger/v2", "user": "bob", "charges": [{"window": "w", "fingerprint": "f", "events": [{"mechanism": "magic"}]}]}"#] {
            try Data(text.utf8).write(to: file)
            XCTAssertThrowsError(try PrivacyLedger.load(devicesDirectory: dir, user: "bob")) { XCTAssertTrue("\($0)".contains("refusing to share"), "\($0)") }
        }
    }
}
