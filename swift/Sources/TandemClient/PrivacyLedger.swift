import Foundation

/// One release of a user's data, as `tandem/privacy/dp_accountant.py` writes it.
public struct PrivacyEvent: Codable, Equatable, Hashable {
    public var mechanism: String  // "pure" ("laplace" in ledger v1), "randomized_response", "gaussian"
    public var epsilon: Double?
    public var classes: Int?
    public var sigma: Double?

    public init(mechanism: String, epsilon: Double? = nil, classes: Int? = nil, sigma: Double? = nil) {
        self.mechanism = mechanism; self.epsilon = epsilon; self.classes = classes; self.sigma = sigma
    }

    /// An upper bound on epsilon at delta = 0 (infinite for the Gaussian); unknown mechanisms are refused.
    func pureEpsilon() throws -> Double {
        switch mechanism {
        case "pure", "laplace", "randomized_response":
            guard let e = epsilon, e > 0 else { throw ClientError.ledger("malformed privacy event (\(mechanism) without epsilon > 0)") }
            return e
        case "gaussian":
            guard let s = sigma, s > 0 else { throw ClientError.ledger("malformed privacy event (gaussian without sigma > 0)") }
            return .infinity
        default: throw ClientError.ledger("unknown mechanism \(mechanism) in a privacy event; refusing to share")
        }
    }
}

/// The device's privacy ledger (`tandem/privacy/ledger.py`, format v2, the same JSON file): every
/// window a user shared under a dp form, charged once per (window, policy fingerprint). Re-sharing a
/// charged window costs nothing; a window that would take the user past the policy's budget is not
/// shared, and neither is any later one.
///
/// Accounting: basic composition (the sum of the events' epsilons; Gaussians through zCDP). It is a
/// valid upper bound, looser than the server's PLD composition, so the device may stop earlier than the
/// Python simulator would, never later.
public struct PrivacyLedger {
    public static let format = "tandem-privacy-ledger/v2"
    public static let fileName = "privacy_ledger.json"

    public struct Charge: Codable, Equatable {
        public var window: String
        public var fingerprint: String
        public var events: [PrivacyEvent]
    }

    struct File: Codable {
        var format: String?
        var user: String
        var charges: [Charge]
    }

    public let user: String
    public private(set) var charges: [Charge]
    public let url: URL?

    public init(user: String, charges: [Charge] = [], url: URL? = nil) {
        self.user = user; self.charges = charges; self.url = url
    }

    /// The ledger of `user` under `devicesDirectory/<user>/privacy_ledger.json` (empty if there is none).
    /// A ledger it cannot read is refused: a device never shares on a history it cannot read.
    public static func load(devicesDirectory: URL, user: String) throws -> PrivacyLedger {
        let url = devicesDirectory.appendingPathComponent(user).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return PrivacyLedger(user: user, url: url) }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
        } catch {
            throw ClientError.ledger("privacy ledger \(url.path) is unreadable; refusing to share")
        }
        guard file.format == format else {
            throw ClientError.ledger("privacy ledger \(url.path) is in format \(file.format ?? "v1"), this device reads \(format); refusing to share")
        }
        for charge in file.charges { for event in charge.events { _ = try event.pureEpsilon() } }
        return PrivacyLedger(user: user, charges: file.charges, url: url)
    }

    /// Written atomically (a temporary file, then a rename), before anything is uploaded.
    public func save() throws {
        guard let url else { return }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(File(format: Self.format, user: user, charges: charges)).write(to: url, options: .atomic)
    }

    public func charged(fingerprint: String) -> Set<String> {
        Set(charges.filter { $0.fingerprint == fingerprint }.map(\.window))
    }

    /// Epsilon at `delta` over every release so far (basic composition).
    public func spent(delta: Double) throws -> Double {
        try Self.basicBound(charges.map(\.events), delta: delta)
    }

    /// The windows of `windowIds` shareable under `policy` within its budget: those already charged
    /// under it (free) and the longest prefix of the others that fits.
    public func affordable(policy: SharingPolicy, windowIds: [String]) throws -> [String] {
        let done = charged(fingerprint: policy.fingerprint)
        let cost = policy.windowEvents()
        let fresh = windowIds.filter { !done.contains($0) }
        let history = charges.map(\.events)
        var lo = 0, hi = fresh.count
        func fits(_ n: Int) throws -> Bool {
            try Self.basicBound(history + Array(repeating: cost, count: n), delta: policy.delta) <= policy.userBudgetEpsilon + 1e-9
        }
        if try fits(hi) { lo = hi }
        while lo < hi {  // epsilon grows with every window
            let mid = (lo + hi + 1) / 2
            if try fits(mid) { lo = mid } else { hi = mid - 1 }
        }
        let allowed = Set(fresh.prefix(lo))
        return windowIds.filter { done.contains($0) || allowed.contains($0) }
    }

    /// Records the windows as released under `policy` (once each); returns how many were new.
    @discardableResult
    public mutating func charge(policy: SharingPolicy, windowIds: [String]) -> Int {
        var done = charged(fingerprint: policy.fingerprint)
        let cost = policy.windowEvents()
        var added = 0
        for window in windowIds where !done.contains(window) {
            charges.append(Charge(window: window, fingerprint: policy.fingerprint, events: cost))
            done.insert(window)
            added += 1
        }
        return added
    }

    /// Shares what fits and says so: the windows allowed, and a one-line refusal when any were withheld.
    public mutating func admit(policy: SharingPolicy, windowIds: [String]) throws -> (allowed: [String], refusal: String?) {
        guard policy.has("dp") else { return (windowIds, nil) }
        let allowed = try affordable(policy: policy, windowIds: windowIds)
        charge(policy: policy, windowIds: allowed)
        let withheld = windowIds.count - allowed.count
        guard withheld > 0 else { return (allowed, nil) }
        let spent = try spent(delta: policy.delta)
        return (allowed, String(format: "privacy budget reached (epsilon %.2f of %g at delta %g); %d window(s) not shared",
                                spent, policy.userBudgetEpsilon, policy.delta, withheld))
    }

    /// Basic composition: pure epsilons add; Gaussians' zCDP rho adds and converts at `delta`.
    static func basicBound(_ eventLists: [[PrivacyEvent]], delta: Double) throws -> Double {
        var pure = 0.0, rho = 0.0
        for events in eventLists {
            for event in events {
                let e = try event.pureEpsilon()
                if event.mechanism == "gaussian" { rho += 1 / (2 * event.sigma! * event.sigma!) } else { pure += e }
            }
        }
        return pure + (rho > 0 ? rho + 2 * (rho * Foundation.log(1 / delta)).squareRoot() : 0)
    }
}
