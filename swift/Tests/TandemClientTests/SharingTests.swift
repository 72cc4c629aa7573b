import XCTest
import TandemSecurity
@testable import TandemClient

/// The sharing client's identities and batch cuts against the Python simulator's, and the request
/// signing message against the gateway's (`tandem/contract/request_signing.py`).
final class SharingTests: XCTestCase {
    let fx = PolicyFixtures.shared

    func client(policy: JSONValue) throws -> SharingClient {
        let spec = try JSONSerialization.data(withJSONObject: ["task": "har/v1+test", "feature_names": fx.feature_names, "labels": fx.classes])
        return try SharingClient(spec: spec, policyJSON: JSONEncoder().encode(policy), pseudonymKey: Data(fx.identity.key.utf8), keyId: "k1")
    }

    func testPseudonymWindowIdsAndBatchIdAreThePythonSimulators() throws {
        let id = fx.identity
        let client = try client(policy: fx.pseudonymized_public)
        XCTAssertEqual(try client.pseudonym(of: id.user), id.pseudonym)
        let windows = id.window_keys.enumerated().map { n, key in
            DeviceWindow(key: key, capturedAtMs: Int64(1_000 * n), features: Array(repeating: 0.25, count: fx.feature_names.count),
                         label: .string(fx.classes[n]))
        }
        var ledger: PrivacyLedger?
        let prepared = try client.prepare(userId: id.user, device: ["device_model": "iPhone15,2"], windows: windows.reversed(), ledger: &ledger)
        XCTAssertEqual(prepared.batches.count, 1)
        let batch = prepared.batches[0]
        XCTAssertEqual(batch.columns["window_id"], .strings(id.window_ids))  // capture order
        XCTAssertTrue(batch.header.clientBatchId.hasPrefix(id.batch_id + "."))
        XCTAssertEqual(batch.header.pseudonym, id.pseudonym)
        XCTAssertEqual(batch.columns["device_model"], .strings(Array(repeating: "iPhone15,2", count: 3)))
    }

    func testBatchesAreCutAsTheSimulatorCutsThem() throws {
        var client = try client(policy: fx.pseudonymized_public)
        client.batchSize = 4
        let windows = (0..<10).map { DeviceWindow(key: "0:\($0)", capturedAtMs: Int64($0), features: Array(repeating: 1, count: fx.feature_names.count), label: .string(fx.classes[0])) }
        var ledger: PrivacyLedger?
        let counts = try client.prepare(userId: "u", device: [:], windows: windows, ledger: &ledger).batches.map(\.header.rowCount)
        XCTAssertEqual(counts, [4, 4, 2])
    }

    func testAnonymizedGeneralizesTheDeviceAndDpNeedsTheLedger() throws {
        var anonymized = try JSONSerialization.jsonObject(with: JSONEncoder().encode(fx.pseudonymized_public)) as! [String: Any]
        anonymized["forms"] = ["pseudonymized", "anonymized"]
        anonymized["name"] = "pseudonymized+anonymized/v1"
        let client = try client(policy: JSONDecoder().decode(JSONValue.self, from: JSONSerialization.data(withJSONObject: anonymized)))
        let window = DeviceWindow(key: "k", capturedAtMs: 0, features: Array(repeating: 1, count: fx.feature_names.count), label: .string(fx.classes[0]))
        var ledger: PrivacyLedger?
        let batch = try client.prepare(userId: "u", device: ["device_model": "iPhone15,2", "locale": "en_US"], windows: [window], ledger: &ledger).batches[0]
        XCTAssertEqual(batch.columns["device_model"], .strings(["iPhone15"]))
        XCTAssertEqual(batch.columns["locale"], .strings(["en"]))

        let dp = try self.client(policy: fx.policies[0].public)
        XCTAssertThrowsError(try dp.prepare(userId: "u", device: [:], windows: [window], ledger: &ledger)) { XCTAssertTrue("\($0)".contains("ledger")) }
    }

    func testSignedMessageAndInstallIdAreTheGatewaysAndTheSignatureVerifies() throws {
        let id = fx.identity
        let message = GatewayUploader.signedMessage(method: "post", path: "/v1/batches", contentSHA256: String(repeating: "ab", count: 32),
                                                    timestamp: "1764766800", nonce: String(repeating: "n", count: 16), installId: id.install_id)
        XCTAssertEqual(String(decoding: message, as: UTF8.self), id.message)
        XCTAssertEqual(TandemCrypto.sha256(Data(tandemHexString: id.x963_hex)!).tandemHex, id.install_id)

        let key = try TandemCrypto.P256SigningKey()
        let uploader = GatewayUploader(gateway: URL(string: "http://127.0.0.1:9")!, signer: key)
        let body = Data("body".utf8)
        let headers = try uploader.signingHeaders(method: "POST", path: "/v1/batches", body: body)
        XCTAssertEqual(headers["X-Tandem-Install"], TandemCrypto.sha256(key.publicKey.x963Representation).tandemHex)
        XCTAssertEqual(headers["X-Tandem-Content-SHA256"], TandemCrypto.sha256(body).tandemHex)
        let signed = GatewayUploader.signedMessage(method: "POST", path: "/v1/batches", contentSHA256: headers["X-Tandem-Content-SHA256"]!,
                                                   timestamp: headers["X-Tandem-Timestamp"]!, nonce: headers["X-Tandem-Nonce"]!,
                                                   installId: headers["X-Tandem-Install"]!)
        let signature = try TandemCrypto.P256Signature(derRepresentation: Data(base64Encoded: headers["X-Tandem-Signature"]!)!)
        XCTAssertTrue(key.publicKey.isValidSignature(signature, for: signed))
        XCTAssertFalse(key.publicKey.isValidSignature(signature, for: signed + Data("x".utf8)))
        XCTAssertNotEqual(try uploader.signingHeaders(method: "POST", path: "/v1/batches", body: body)["X-Tandem-Nonce"], headers["X-Tandem-Nonce"])
    }
}
