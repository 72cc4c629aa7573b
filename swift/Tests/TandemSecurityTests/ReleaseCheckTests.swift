import Foundation
import XCTest
@testable import TandemSecurity

/// The release check against two releases written and signed by `tandem.release.layout`
/// (Fixtures/make_fixtures.py): what `tandem pull` accepts is accepted, what it refuses is refused.
final class ReleaseCheckTests: XCTestCase {
    let r = SecurityFixtures.section("releases")
    var model: String { r["model"] as! String }
    func release(_ v: Int) -> [String: Data] { (r["v\(v)"] as! [String: String]).mapValues { Data(tandemHex: $0)! } }
    var keys: ReleaseKeys { ReleaseKeys([try! ReleaseKeys.parse(r["public_key"] as! String)]) }
    var signer: TandemCrypto.Ed25519PrivateKey { try! TandemCrypto.Ed25519PrivateKey(rawRepresentation: Data(tandemHex: r["private_key"] as! String)!) }
    func pointer(_ name: String) -> [String: Any] {
        try! JSONSerialization.jsonObject(with: Data((r[name] as! String).utf8)) as! [String: Any]
    }

    func verify(_ files: [String: Data], version: String = "2", keys: ReleaseKeys? = nil, minimum: Int? = nil,
                pointerSHA: String? = nil) throws -> ReleaseCheck.Verified {
        try ReleaseCheck.verify(manifest: files["manifest.json"]!, signatureFile: files["manifest.sig"], model: model,
                                version: version, keys: keys ?? self.keys, minimumVersion: minimum,
                                pointerManifestSHA256: pointerSHA) { name in
            guard let data = files[name] else { throw ReleaseError.integrity("\(name) missing") }
            return data
        }
    }

    func assertRefused(_ files: [String: Data], version: String = "2", keys: ReleaseKeys? = nil, minimum: Int? = nil,
                       containing text: String, line: UInt = #line) {
        XCTAssertThrowsError(try verify(files, version: version, keys: keys, minimum: minimum), line: line) {
            XCTAssertTrue("\($0)".contains(text), "\($0)", line: line)
        }
    }

    func testAGenuineReleaseVerifies() throws {
        let v = try verify(release(2), minimum: 2)
        XCTAssertEqual(v.version, 2)
        XCTAssertEqual(v.keyID, r["key_id"] as! String)
        XCTAssertEqual(Set(v.files.keys), ["model.mlmodel", "feature_spec.json"])
        XCTAssertEqual(ReleaseKeys.keyID(keys.keys.values.first!), r["key_id"] as! String)
    }

    func testAFlippedByteInAnyFileIsRefused() {
        for name in ["model.mlmodel", "feature_spec.json", "manifest.json", "manifest.sig"] {
            var files = release(2)
            var data = files[name]!
            data[data.count / 2] ^= 0x01
            files[name] = data
            XCTAssertThrowsError(try verify(files), name)
        }
    }

    func testKeysAndSignaturesThatAreNotTrusted() {
        let foreign = ReleaseKeys([try! ReleaseKeys.parse(r["foreign_public_key"] as! String)])
        assertRefused(release(2), keys: foreign, containing: "not pinned")
        assertRefused(release(2), keys: ReleaseKeys([]), containing: "no public key pinned")
        var unsigned = release(2)
        unsigned["manifest.sig"] = nil
        assertRefused(unsigned, containing: "not signed")
        var malformed = release(2)
        malformed["manifest.sig"] = Data("{}".utf8)
        assertRefused(malformed, containing: "malformed")
        // the v1 manifest and signature served as version 2: genuine, but for another version
        assertRefused(release(1), version: "2", containing: "is for fixture-model/1")
    }

    func testMinimumVersionAndVersionNames() {
        assertRefused(release(1), version: "1", minimum: 2, containing: "below the minimum version 2")
        XCTAssertNoThrow(try verify(release(1), version: "1", minimum: 1))
        assertRefused(release(2), version: "../2", containing: "not a release version")
    }

    func testAManifestNamingAPathIsRefusedEvenWhenSigned() throws {
        for bad in ["../x", "/tmp/x", "a/b", "manifest.sig", ""] {
            let manifest = try JSONSerialization.data(withJSONObject: [
                "model": model, "version": "2", "files": [bad: ["sha256": String(repeating: "0", count: 64), "size": 0]],
            ])
            let sig = try JSONSerialization.data(withJSONObject: [
                "alg": "ed25519", "key_id": r["key_id"] as! String, "signature": try signer.signature(for: manifest).base64EncodedString(),
            ])
            assertRefused(["manifest.json": manifest, "manifest.sig": sig], containing: "not a plain file name")
        }
        XCTAssertTrue(ReleaseCheck.isPlainFileName("TandemGoldenTests.swift"))
    }

    func testSignedChannelPointers() throws {
        let at2 = pointer("pointer_v2")
        XCTAssertEqual(String(decoding: try ChannelPointer.canonicalBytes(at2), as: UTF8.self), r["pointer_v2_canonical"] as! String)
        let signed = try ChannelPointer.verify(at2, keys: keys, model: model, channel: "staging")
        XCTAssertEqual(signed.version, "2")
        XCTAssertNoThrow(try verify(release(2), pointerSHA: signed.manifestSHA256))
        // the pointer's checksum must name the manifest served
        XCTAssertThrowsError(try verify(release(2), pointerSHA: TandemCrypto.sha256(Data("x".utf8)).tandemHex))

        var edited = at2
        edited["version"] = "1"
        XCTAssertThrowsError(try ChannelPointer.verify(edited, keys: keys, model: model, channel: "staging")) {
            XCTAssertTrue("\($0)".contains("does not verify"), "\($0)")
        }
        var unsigned = at2
        unsigned["signature"] = nil
        XCTAssertThrowsError(try ChannelPointer.verify(unsigned, keys: keys, model: model, channel: "staging")) {
            XCTAssertTrue("\($0)".contains("not signed"), "\($0)")
        }
        XCTAssertThrowsError(try ChannelPointer.verify(at2, keys: keys, model: model, channel: "production")) {
            XCTAssertTrue("\($0)".contains("copied from elsewhere"), "\($0)")
        }
        let foreign = ReleaseKeys([try ReleaseKeys.parse(r["foreign_public_key"] as! String)])
        XCTAssertThrowsError(try ChannelPointer.verify(at2, keys: foreign, model: model, channel: "staging"))
        // a genuine, signed move back to 1 verifies; the app's minimum version is what refuses it
        let back = try ChannelPointer.verify(pointer("pointer_v1"), keys: keys, model: model, channel: "staging")
        XCTAssertEqual(back.version, "1")
        XCTAssertThrowsError(try verify(release(1), version: back.version, minimum: 2, pointerSHA: back.manifestSHA256))
    }

    func testPublicKeyForms() throws {
        let hex = r["public_key"] as! String
        let raw = Data(tandemHex: hex)!
        let pem = "-----BEGIN PUBLIC KEY-----\n" + (ReleaseKeys.ed25519SPKIPrefix + raw).base64EncodedString() + "\n-----END PUBLIC KEY-----\n"
        XCTAssertEqual(try ReleaseKeys.parse(pem).rawRepresentation, raw)
        XCTAssertEqual(try ReleaseKeys.parse(hex.uppercased() + "\n").rawRepresentation, raw)
        XCTAssertThrowsError(try ReleaseKeys.parse("abc"))
    }
}

/// The new-base rule: restore when the backup fits the installed base, re-personalize when it does
/// not, and never quietly re-personalize over a tampered or rolled-back backup.
final class NewBaseRuleTests: XCTestCase {
    let key = SecurityFixtures.key
    func blob(_ name: String) -> Data { SecurityFixtures.hex("backups", name) }

    func testRestoreRepersonalizeOrRefuse() throws {
        XCTAssertTrue(try NewBaseRule.decide(backup: blob("counter_5"), key: key, installedBase: blob("base")).restores)
        guard case .repersonalize(let why) = try NewBaseRule.decide(backup: blob("counter_5"), key: key, installedBase: blob("other_base"))
        else { return XCTFail("expected re-personalization on a new base") }
        XCTAssertTrue(why.contains("trained from base 1.4.0"), why)
        guard case .repersonalize = try NewBaseRule.decide(backup: nil, key: key, installedBase: blob("base"))
        else { return XCTFail("expected re-personalization without a backup") }
        var bad = blob("counter_5")
        bad[bad.count - 2] ^= 1
        XCTAssertThrowsError(try NewBaseRule.decide(backup: bad, key: key, installedBase: blob("other_base")))
        XCTAssertThrowsError(try NewBaseRule.decide(backup: blob("counter_5"), key: key, installedBase: blob("base"), minimumCounter: 6))
    }
}
