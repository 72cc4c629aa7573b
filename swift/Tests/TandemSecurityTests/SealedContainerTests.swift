import Foundation
import XCTest
@testable import TandemSecurity

final class PseudonymTests: XCTestCase {
    func testPseudonymsAreByteIdenticalToPython() throws {
        let cases = SecurityFixtures.root["pseudonyms"] as! [[String: String]]
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            XCTAssertEqual(try Pseudonyms.pseudonymize(c["user_id"]!, key: Data(tandemHex: c["key"]!)!), c["pseudonym"]!, c["user_id"]!)
        }
        XCTAssertThrowsError(try Pseudonyms.pseudonymize("u", key: Data()))
    }
}

final class SealedContainerTests: XCTestCase {
    let key = SecurityFixtures.key

    func container(_ name: String) -> [String: Any] { SecurityFixtures.section("containers")[name] as! [String: Any] }

    func testSealingWithPythonsNonceGivesPythonsBytes() throws {
        let c = container("fixed_nonce")
        let header = (c["header"] as! [String: Any]).mapValues { v -> HeaderValue in
            if let s = v as? String { return .string(s) }
            return .int(v as! Int)
        }
        let sealed = try SealedContainer.seal(Data(tandemHex: c["plaintext"] as! String)!, key: key,
                                              magic: Data((c["magic"] as! String).utf8), header: header,
                                              nonce: Data(tandemHex: c["nonce"] as! String)!)
        XCTAssertEqual(sealed.tandemHex, c["sealed"] as! String)
    }

    func testPythonSealedContainersOpen() throws {
        for name in ["fixed_nonce", "batch", "empty"] {
            let c = container(name)
            let magic = Data((c["magic"] as! String).utf8)
            let sealed = Data(tandemHex: c["sealed"] as! String)!
            XCTAssertTrue(SealedContainer.isSealed(sealed, magic: magic))
            let (plain, header) = try SealedContainer.open(sealed, key: key, magic: magic)
            XCTAssertEqual(plain.tandemHex, c["plaintext"] as! String, name)
            XCTAssertEqual(header["alg"], .string("AES-256-GCM"))
        }
        let batch = try SealedContainer.readHeader(Data(tandemHex: container("batch")["sealed"] as! String)!, magic: Data("TNDMSEAL".utf8))
        XCTAssertEqual(batch["key_id"], "e1")
        XCTAssertEqual(batch["content"], "application/vnd.apache.parquet")
    }

    func testEveryFlippedByteOfAPythonContainerIsRefused() throws {
        let c = container("fixed_nonce")
        let magic = Data("TNDX".utf8), sealed = Data(tandemHex: c["sealed"] as! String)!
        for i in 0..<sealed.count {
            var bad = sealed
            bad[i] ^= 0x01
            XCTAssertThrowsError(try SealedContainer.open(bad, key: key, magic: magic), "byte \(i)") { error in
                XCTAssertTrue(error is SealError, "byte \(i): \(error)")
            }
        }
    }

    func testWrongKeyTruncationShortKeyAndNoMagic() throws {
        let sealed = try SealedContainer.seal(Data("x".utf8), key: key, magic: Data("TNDX".utf8), header: ["key_id": "k"])
        XCTAssertEqual(try SealedContainer.open(sealed, key: key, magic: Data("TNDX".utf8)).plaintext, Data("x".utf8))
        XCTAssertThrowsError(try SealedContainer.open(sealed, key: TandemCrypto.SecureRandom.bytes(32), magic: Data("TNDX".utf8))) {
            XCTAssertEqual($0 as? SealError, .authenticationFailed(keyID: "k"))
        }
        XCTAssertThrowsError(try SealedContainer.open(sealed.dropLast(), key: key, magic: Data("TNDX".utf8)))
        XCTAssertThrowsError(try SealedContainer.open(sealed.prefix(12), key: key, magic: Data("TNDX".utf8))) {
            XCTAssertEqual($0 as? SealError, .truncated)
        }
        XCTAssertThrowsError(try SealedContainer.open(sealed, key: key.prefix(16), magic: Data("TNDX".utf8))) {
            XCTAssertEqual($0 as? SealError, .keyLength(16))
        }
        XCTAssertThrowsError(try SealedContainer.seal(Data(), key: key.prefix(16), magic: Data("TNDX".utf8), header: ["key_id": "k"]))
        XCTAssertThrowsError(try SealedContainer.open(sealed, key: key, magic: Data("TNDB".utf8))) {
            XCTAssertEqual($0 as? SealError, .notSealed)
        }
        XCTAssertThrowsError(try SealedContainer.seal(Data(), key: key, magic: Data("TNDX".utf8), header: [:]))
    }

    func testHeaderJSONMatchesPythonsDumps() {
        let json = HeaderValue.pythonJSON(["key_id": "é\"\\/", "b": 2, "a": true])
        XCTAssertEqual(String(decoding: json, as: UTF8.self), #"{"a": true, "b": 2, "key_id": "\u00e9\"\\/"}"#)
    }
}
