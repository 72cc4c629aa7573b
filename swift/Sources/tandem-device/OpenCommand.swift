import Foundation
import TandemKit

/// `tandem-device open --in FILE --out FILE [--magic TNDMSEAL]`: the plaintext of a sealed container
/// under TANDEM_ENCRYPTION_KEY; a tampered byte or another key fails and writes nothing.
func openCommand(_ args: [String]) throws -> Int32 {
    let o = try SecurityArguments(args, valued: ["--in", "--out", "--magic"])
    let sealed = try o.readFile("--in")
    let out = try o.required("--out", "FILE")
    let key = try hexKey(fromEnvironment: "TANDEM_ENCRYPTION_KEY")
    let (plaintext, header) = try SealedContainer.open(sealed, key: key, magic: Data((o.optional("--magic") ?? "TNDMSEAL").utf8))
    try writeAtomically(plaintext, to: out)
    print("opened \(plaintext.count) bytes sealed under key \(header["key_id"]?.stringValue ?? "?") into \(out)")
    return 0
}
