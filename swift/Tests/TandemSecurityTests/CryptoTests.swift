import Foundation
import XCTest
@testable import TandemSecurity

/// The primitives against vectors computed by Python's hashlib/hmac/cryptography (the server's side;
/// the values are printed by Fixtures/make_fixtures.py, section "primitives").
final class CryptoTests: XCTestCase {
    func hex(_ s: String) -> Data { Data(tandemHex: s)! }

    func testSHA256AndHMAC() {
        XCTAssertEqual(TandemCrypto.sha256(Data("abc".utf8)).tandemHex,
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(TandemCrypto.hmacSHA256(key: Data(0..<40), message: Data("Tandem pseudonym".utf8)).tandemHex,
                       "4846db15d35ec545d01c2793d4320d71fa6b11f06f70c16dc3422d79f44d1322")
        XCTAssertTrue(TandemCrypto.constantTimeEqual(hex("00ff"), hex("00FF")))
        XCTAssertFalse(TandemCrypto.constantTimeEqual(hex("00ff"), hex("00fe")))
    }

    func testAESGCMMatchesPythonAndRefusesTampering() throws {
        let key = Data(0..<32), nonce = Data(0..<12)
        let sealed = try TandemCrypto.AESGCM.seal(Data("hello tandem".utf8), key: key, nonce: nonce, associatedData: Data("aad".utf8))
        XCTAssertEqual(sealed.tandemHex, "2f67ba77aac5b67ae325f2e6da265e717157dd7f8fa7e233bcfef47b")
        XCTAssertEqual(try TandemCrypto.AESGCM.seal(Data(), key: key, nonce: nonce).tandemHex, "f4c2db1dc38805a37b92171c5d0a81cc")
        XCTAssertEqual(try TandemCrypto.AESGCM.open(sealed, key: key, nonce: nonce, associatedData: Data("aad".utf8)),
                       Data("hello tandem".utf8))
        XCTAssertEqual(try TandemCrypto.AESGCM.open(hex("f4c2db1dc38805a37b92171c5d0a81cc"), key: key, nonce: nonce), Data())
        for i in 0..<sealed.count {
            var bad = sealed
            bad[i] ^= 0x01
            XCTAssertThrowsError(try TandemCrypto.AESGCM.open(bad, key: key, nonce: nonce, associatedData: Data("aad".utf8))) {
                XCTAssertEqual($0 as? CryptoError, .authenticationFailed)
            }
        }
        XCTAssertThrowsError(try TandemCrypto.AESGCM.open(sealed, key: key, nonce: nonce, associatedData: Data("aae".utf8)))
        XCTAssertThrowsError(try TandemCrypto.AESGCM.open(sealed.prefix(10), key: key, nonce: nonce))
        XCTAssertThrowsError(try TandemCrypto.AESGCM.seal(Data(), key: Data(0..<16), nonce: nonce)) {
            XCTAssertTrue("\($0)".contains("32 bytes"))
        }
    }

    func testEd25519MatchesPython() throws {
        let key = try TandemCrypto.Ed25519PrivateKey(rawRepresentation: Data(0..<32))
        XCTAssertEqual(key.publicKey.rawRepresentation.tandemHex,
                       "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
        let signature = try key.signature(for: Data("manifest".utf8))
        XCTAssertEqual(signature.tandemHex, "1e4db63e61102e99b54914ade24833ef2596c9ceea12539987a1720628cb3af5"
                       + "3e829d35ee3997de00863f376a2b24d32a627aaf5b2319f304c80ce1508e6f07")
        XCTAssertTrue(key.publicKey.isValidSignature(signature, for: Data("manifest".utf8)))
        XCTAssertFalse(key.publicKey.isValidSignature(signature, for: Data("manifesT".utf8)))
        var bad = signature
        bad[3] ^= 0x80
        XCTAssertFalse(key.publicKey.isValidSignature(bad, for: Data("manifest".utf8)))
        XCTAssertFalse(try TandemCrypto.Ed25519PrivateKey().publicKey.isValidSignature(signature, for: Data("manifest".utf8)))
        XCTAssertThrowsError(try TandemCrypto.Ed25519PublicKey(rawRepresentation: Data(0..<31)))
    }

    func testP256KeysSignaturesAndExports() throws {
        let key = try TandemCrypto.P256SigningKey(rawRepresentation: Data(1...32))
        XCTAssertEqual(key.publicKey.x963Representation.tandemHex,
                       "04515c3d6eb9e396b904d3feca7f54fdcd0cc1e997bf375dca515ad0a6c3b4035f"
                       + "4536be3a50f318fbf9a5475902a221502bef0d57e08c53b2cc0a56f17d9f9354")
        XCTAssertEqual(key.publicKey.derRepresentation.tandemHex,
                       "3059301306072a8648ce3d020106082a8648ce3d03010703420004515c3d6eb9e396b904d3feca7f54fdcd0cc1e997bf375dca515ad0a6c3b4035f"
                       + "4536be3a50f318fbf9a5475902a221502bef0d57e08c53b2cc0a56f17d9f9354")
        XCTAssertEqual(try TandemCrypto.P256PublicKey(derRepresentation: key.publicKey.derRepresentation), key.publicKey)
        let message = Data("POST /v1/batches".utf8)
        let signature = try key.signature(for: message)
        XCTAssertTrue(key.publicKey.isValidSignature(signature, for: message))
        XCTAssertFalse(key.publicKey.isValidSignature(signature, for: message + Data([0])))
        // raw <-> DER round trip keeps the signature valid
        let again = try TandemCrypto.P256Signature(derRepresentation: signature.derRepresentation)
        XCTAssertEqual(again.rawRepresentation, signature.rawRepresentation)
        XCTAssertEqual(again.rawRepresentation.count, 64)
        let fresh = try TandemCrypto.P256SigningKey()
        XCTAssertNotEqual(fresh.rawRepresentation, key.rawRepresentation)
        XCTAssertFalse(fresh.publicKey.isValidSignature(signature, for: message))
        XCTAssertThrowsError(try TandemCrypto.P256PublicKey(x963Representation: Data([4]) + Data(repeating: 1, count: 64)))
        XCTAssertThrowsError(try TandemCrypto.P256Signature(derRepresentation: Data([0x30, 0x02, 0x05])))
    }

    func testSecureRandom() {
        XCTAssertEqual(TandemCrypto.SecureRandom.bytes(32).count, 32)
        XCTAssertNotEqual(TandemCrypto.SecureRandom.bytes(32), TandemCrypto.SecureRandom.bytes(32))
        let draws = (0..<20_000).map { _ in TandemCrypto.SecureRandom.uniform() }
        XCTAssertTrue(draws.allSatisfy { $0 >= 0 && $0 < 1 })
        let mean = draws.reduce(0, +) / Double(draws.count)
        XCTAssertEqual(mean, 0.5, accuracy: 0.02)  // sd of the mean is 0.002: a 10-sigma band
        XCTAssertTrue((0..<1000).allSatisfy { _ in TandemCrypto.SecureRandom.uniformOpen() > 0 })
    }
}
