import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TandemKit

/// `tandem-device pull [--store DIR | --gateway URL] [--channel NAME | --version N] [--model NAME]
///  --public-key KEY... [--min-version N] [--state FILE] --out DIR`: what an app does with an
/// over-the-air base model. With --state (the app's record of the newest version it installed,
/// `{"installed_version": N}`) nothing older than that is accepted and the record advances: a client
/// never goes below the highest version it has seen (TUF's rule against rollbacks).
/// From a local store folder laid out like the bucket (`channels/<model>/<channel>.json`,
/// `releases/<model>/<version>/`; the default: TANDEM_STORE or $TANDEM_HOME/store, as `tandem pull`),
/// or from the gateway's `GET /v1/releases/<channel>`. Keys and the minimum may also come from
/// TANDEM_RELEASE_PUBLIC_KEYS (comma-separated) and TANDEM_MIN_RELEASE_VERSION, as for `tandem pull`. Verifies the
/// manifest's signature against the pinned key(s), the manifest against the channel's checksum, every
/// file's size and sha256, and the minimum version; writes the files only when all of it holds.
func pullCommand(_ args: [String]) throws -> Int32 {
    let o = try SecurityArguments(args, valued: ["--store", "--gateway", "--channel", "--version", "--model", "--public-key",
                                                 "--min-version", "--state", "--out"])
    let out = try o.required("--out", "DIR")
    let env = ProcessInfo.processInfo.environment
    let pinned = o.all("--public-key") + (env["TANDEM_RELEASE_PUBLIC_KEYS"] ?? "").split(separator: ",").map(String.init)
        .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    let keys = ReleaseKeys(try pinned.map(readPublicKey))
    guard !keys.keys.isEmpty else {
        throw SecurityCommandError("no public key pinned: pass --public-key (the release public key) or set "
                                   + "TANDEM_RELEASE_PUBLIC_KEYS; unsigned releases are never pulled")
    }
    var minimum = try o.int("--min-version")
    if minimum == nil, let text = env["TANDEM_MIN_RELEASE_VERSION"], !text.isEmpty {
        guard let n = Int(text), n >= 1 else { throw SecurityCommandError("TANDEM_MIN_RELEASE_VERSION must be a positive integer") }
        minimum = n
    }
    let state = o.optional("--state")
    if let state, let installed = try installedVersion(state) { minimum = max(minimum ?? installed, installed) }
    let source: ReleaseSource
    switch (o.optional("--store"), o.optional("--gateway")) {
    case (let dir?, nil): source = try StoreFolder(root: URL(fileURLWithPath: dir), model: o.optional("--model") ?? env["TANDEM_MODEL_NAME"])
    case (nil, let url?): source = try Gateway(base: url)
    case (nil, nil):
        let store = env["TANDEM_STORE"] ?? ((env["TANDEM_HOME"] ?? ".tandem") + "/store")
        guard !store.contains("://") else {
            throw SecurityCommandError("TANDEM_STORE is not a local folder: pass --store DIR (a copy laid out like the bucket) or --gateway URL")
        }
        source = try StoreFolder(root: URL(fileURLWithPath: store), model: o.optional("--model") ?? env["TANDEM_MODEL_NAME"])
    default: throw SecurityCommandError("give one of --store DIR or --gateway URL, not both")
    }
    let found: FoundRelease
    if let version = o.optional("--version") {
        guard o.optional("--channel") == nil else { throw SecurityCommandError("give --channel or --version, not both") }
        found = try source.release(version: version)
    } else {
        let channel = o.optional("--channel") ?? "staging"
        guard ReleaseCheck.isChannelName(channel) else { throw ReleaseError.badChannel(channel) }
        found = try source.release(channel: channel)
    }
    let verified: ReleaseCheck.Verified
    do {
        var pointerSHA: String? = nil
        if let pointer = found.pointer {
            let signed = try ChannelPointer.verify(pointer, keys: keys, model: found.model, channel: o.optional("--channel") ?? "staging")
            guard signed.version == found.version else {
                throw ReleaseError.integrity("the channel names version \(signed.version) but \(found.version) was served")
            }
            pointerSHA = signed.manifestSHA256
        }
        verified = try ReleaseCheck.verify(manifest: found.manifest, signatureFile: found.signature, model: found.model,
                                           version: found.version, keys: keys, minimumVersion: minimum,
                                           pointerManifestSHA256: pointerSHA, fetch: found.fetch)
    } catch {
        throw SecurityCommandError("\(error); nothing was written")
    }
    try writeRelease(verified, signature: found.signature!, into: URL(fileURLWithPath: out))
    if let state {
        let newest = max(verified.version, try installedVersion(state) ?? 0)
        try writeAtomically(Data("{\"installed_version\": \(newest)}\n".utf8), to: state)
    }
    print("\(verified.model) version \(verified.version): signature by \(verified.keyID) and \(verified.files.count) files verified into \(out)")
    for name in verified.files.keys.sorted() {
        print("  \(name)  sha256 \(TandemCrypto.sha256(verified.files[name]!).tandemHex)  \(verified.files[name]!.count) bytes")
    }
    return 0
}

/// The newest release version this app has installed (nil before the first).
private func installedVersion(_ path: String) throws -> Int? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
          let n = (object["installed_version"] as? NSNumber)?.intValue, n >= 1 else {
        throw SecurityCommandError("release state \(path) is malformed (expected {\"installed_version\": N})")
    }
    return n
}

/// A public key option: 64 hex characters, PEM, or the path of a file holding either.
private func readPublicKey(_ text: String) throws -> TandemCrypto.Ed25519PublicKey {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if trimmed.hasPrefix("-----BEGIN") || (trimmed.count == 64 && Data(tandemHex: trimmed) != nil) {
        return try ReleaseKeys.parse(trimmed)
    }
    guard let data = FileManager.default.contents(atPath: (trimmed as NSString).expandingTildeInPath) else {
        throw SecurityCommandError("public key '\(trimmed.prefix(80))' is neither 64 hex characters, PEM, nor a readable file")
    }
    return try ReleaseKeys.parse(String(decoding: data, as: UTF8.self))
}

/// Stage every file beside `out`, then move them in: a failed write leaves no partial release.
private func writeRelease(_ release: ReleaseCheck.Verified, signature: Data, into out: URL) throws {
    let fm = FileManager.default
    try fm.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true)
    let staging = out.deletingLastPathComponent().appendingPathComponent(".pull-\(UUID().uuidString)")
    try fm.createDirectory(at: staging, withIntermediateDirectories: false)
    defer { try? fm.removeItem(at: staging) }
    var all = release.files
    all[ReleaseCheck.manifestName] = release.manifestBytes
    all[ReleaseCheck.signatureName] = signature
    for (name, data) in all { try data.write(to: staging.appendingPathComponent(name)) }
    try fm.createDirectory(at: out, withIntermediateDirectories: true)
    for name in all.keys {
        let target = out.appendingPathComponent(name)
        if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
        try fm.moveItem(at: staging.appendingPathComponent(name), to: target)
    }
}

/// What a source hands the check: nothing in it is trusted until `ReleaseCheck.verify` says so.
struct FoundRelease {
    let model: String
    let version: String
    let manifest: Data
    let signature: Data?
    /// The channel pointer as read (by channel only): verified by the command before it is used.
    let pointer: [String: Any]?
    let fetch: (String) throws -> Data
}

protocol ReleaseSource {
    func release(channel: String) throws -> FoundRelease
    func release(version: String) throws -> FoundRelease
}

/// A local folder laid out like the store's bucket.
struct StoreFolder: ReleaseSource {
    let root: URL
    let model: String

    init(root: URL, model: String?) throws {
        self.root = root
        if let model { self.model = model; return }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("channels").path)) ?? []
        let models = names.filter { !$0.hasPrefix(".") }
        guard models.count == 1 else {
            throw SecurityCommandError(models.isEmpty ? "no channels/ in the store \(root.path): is it a Tandem store?"
                                                      : "the store holds several models (\(models.sorted().joined(separator: ", "))): pass --model")
        }
        self.model = models[0]
    }

    private func read(_ key: String) -> Data? { FileManager.default.contents(atPath: root.appendingPathComponent(key).path) }

    func release(channel: String) throws -> FoundRelease {
        guard let data = read("channels/\(model)/\(channel).json") else {
            throw ReleaseError.notFound("channel '\(channel)' of \(model) points to no release yet")
        }
        guard let pointer = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let version = pointer["version"] as? String else {
            throw ReleaseError.integrity("channel '\(channel)' of \(model) is malformed")
        }
        return try release(version: version, pointer: pointer)
    }

    func release(version: String) throws -> FoundRelease { try release(version: version, pointer: nil) }

    private func release(version: String, pointer: [String: Any]?) throws -> FoundRelease {
        guard ReleaseCheck.releaseVersion(version) != nil else { throw ReleaseError.badVersion(version) }
        let prefix = "releases/\(model)/\(version)/"
        guard let manifest = read(prefix + ReleaseCheck.manifestName) else {
            throw ReleaseError.notFound("there is no release \(model)/\(version)")
        }
        return FoundRelease(model: model, version: version, manifest: manifest, signature: read(prefix + ReleaseCheck.signatureName),
                            pointer: pointer) { name in
            guard let data = read(prefix + name) else { throw ReleaseError.integrity("\(name) of \(model)/\(version) is missing") }
            return data
        }
    }
}

/// One HTTP answer, handed from URLSession's queue to the waiting command.
private final class Answer: @unchecked Sendable {
    var result: Result<(Data, Int), Error> = .failure(SecurityCommandError("no answer"))
}

/// The device gateway's release discovery (`GET /v1/releases/<channel>`): the signed manifest and
/// where each file is; the gateway vouches for nothing, the app checks it all.
struct Gateway: ReleaseSource {
    let base: URL

    init(base: String) throws {
        guard let url = URL(string: base.hasSuffix("/") ? String(base.dropLast()) : base), url.scheme != nil else {
            throw SecurityCommandError("--gateway \(base.prefix(80)) is not a URL")
        }
        self.base = url
    }

    func release(version: String) throws -> FoundRelease {
        throw SecurityCommandError("the gateway serves releases by channel: pass --channel")
    }

    func release(channel: String) throws -> FoundRelease {
        let body = try get(URL(string: base.absoluteString + "/v1/releases/\(channel)")!)
        guard let answer = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any],
              let model = answer["model"] as? String, let version = answer["version"] as? String,
              let manifestB64 = answer["manifest"] as? String, let manifest = Data(base64Encoded: manifestB64) else {
            throw ReleaseError.integrity("the gateway's answer for channel '\(channel)' is malformed")
        }
        let signature = (answer["signature"] as? String).flatMap { Data(base64Encoded: $0) }
        guard let pointer = answer["pointer"] as? [String: Any] else {
            throw ReleaseError.integrity("the gateway's answer for channel '\(channel)' has no channel pointer")
        }
        var urls: [String: String] = [:]
        for file in answer["files"] as? [[String: Any]] ?? [] {
            if let name = file["name"] as? String, let url = file["url"] as? String { urls[name] = url }
        }
        return FoundRelease(model: model, version: version, manifest: manifest, signature: signature,
                            pointer: pointer) { name in
            guard let link = urls[name] else { throw ReleaseError.integrity("the gateway lists no URL for \(name)") }
            let url = link.hasPrefix("/") ? URL(string: base.absoluteString + link) : URL(string: link)
            guard let url else { throw ReleaseError.integrity("the gateway's URL for \(name) is malformed") }
            return try get(url)
        }
    }

    private func get(_ url: URL) throws -> Data {
        let answer = Answer()
        let done = DispatchSemaphore(value: 0)
        var request = URLRequest(url: url)
        request.timeoutInterval = 30
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error { answer.result = .failure(error) }
            else { answer.result = .success((data ?? Data(), (response as? HTTPURLResponse)?.statusCode ?? 0)) }
            done.signal()
        }.resume()
        done.wait()  // the semaphore orders the write above before this read
        switch answer.result {
        case .failure(let error):
            throw SecurityCommandError("the gateway at \(base.absoluteString) cannot be reached (\(error.localizedDescription)): is it running?")
        case .success(let (data, status)):
            guard status == 200 else {
                let detail = ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["detail"].map { "\($0)" } ?? ""
                throw ReleaseError.notFound("GET \(url.path) answered \(status)\(detail.isEmpty ? "" : ": \(detail.prefix(200))")")
            }
            return data
        }
    }
}
