import Foundation
import TandemKit

/// `tandem-device seal --in FILE --out FILE [--magic TNDMSEAL] [--key-id ID] [--content TYPE]`:
/// the sealed container of FILE under TANDEM_ENCRYPTION_KEY (64 hex), as `tandem/privacy/sealing.py`.
func sealCommand(_ args: [String]) throws -> Int32 {
    let o = try SecurityArguments(args, valued: ["--in", "--out", "--magic", "--key-id", "--content"])
    let plaintext = try o.readFile("--in")
    let out = try o.required("--out", "FILE")
    let key = try hexKey(fromEnvironment: "TANDEM_ENCRYPTION_KEY")
    let keyID = o.optional("--key-id") ?? ProcessInfo.processInfo.environment["TANDEM_ENCRYPTION_KEY_ID"] ?? "e1"
    var header: [String: HeaderValue] = ["key_id": .string(keyID)]
    header["content"] = .string(o.optional("--content") ?? "application/vnd.apache.parquet")
    let sealed = try SealedContainer.seal(plaintext, key: key, magic: Data((o.optional("--magic") ?? "TNDMSEAL").utf8), header: header)
    try writeAtomically(sealed, to: out)
    print("sealed \(plaintext.count) bytes under key \(keyID) into \(out)")
    return 0
}
