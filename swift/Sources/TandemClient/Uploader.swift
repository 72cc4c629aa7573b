import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TandemSecurity

/// Talks to the device gateway (`docs/wire-format.md`): enrolls the install with its P-256 key, signs
/// every request the way the gateway verifies it, retries with exponential backoff (honouring
/// `Retry-After`), and sends an `Idempotency-Key` so a retried upload lands once.
public final class GatewayUploader {
    public struct Answer {
        public let status: Int
        public let json: [String: Any]
        public let attempts: Int
        public var retryAfter: TimeInterval? = nil
        public var detail: String { json["detail"] as? String ?? "" }
    }

    public let gateway: URL
    public let signer: TandemCrypto.P256Signer
    public let installId: String
    public var maxAttempts = 5
    public var baseDelay: TimeInterval = 0.5
    public var maxDelay: TimeInterval = 30
    /// A `Retry-After` longer than this (a daily limit: hours to midnight UTC) is not slept through:
    /// the answer comes back at once, so the app can schedule the upload for later.
    public var maxRetryAfter: TimeInterval = 120
    let session: URLSession
    let sleep: (TimeInterval) -> Void

    public init(gateway: URL, signer: TandemCrypto.P256Signer, session: URLSession = .shared, sleep: @escaping (TimeInterval) -> Void = { Thread.sleep(forTimeInterval: $0) }) {
        self.gateway = gateway
        self.signer = signer
        self.installId = TandemCrypto.sha256(signer.publicKey.x963Representation).tandemHex
        self.session = session
        self.sleep = sleep
    }

    /// `POST /v1/enroll` with the development attestation (an app with App Attest passes its object).
    @discardableResult
    public func enroll(attestation: [String: String] = ["format": "development"]) throws -> Answer {
        let body = try JSONSerialization.data(withJSONObject: [
            "public_key": signer.publicKey.x963Representation.base64EncodedString(), "attestation": attestation,
        ], options: [.sortedKeys])
        let answer = try send(method: "POST", path: "/v1/enroll", body: body, headers: ["Content-Type": "application/json"])
        guard answer.status == 200 || answer.status == 201 else {
            throw ClientError.upload("enrollment refused by \(gateway.absoluteString) (HTTP \(answer.status)): \(answer.detail)")
        }
        return answer
    }

    /// `POST /v1/batches`: the gzip body (or a sealed container) of one batch. The same bytes and
    /// idempotency key on every attempt; each attempt is signed afresh (new timestamp and nonce).
    public func upload(body: Data, idempotencyKey: String, sealed: Bool = false) throws -> Answer {
        var headers = ["Idempotency-Key": idempotencyKey]
        if sealed {
            headers["Content-Type"] = WireBatch.sealedContentType
        } else {
            headers["Content-Type"] = WireBatch.contentType
            headers["Content-Encoding"] = "gzip"
        }
        let answer = try send(method: "POST", path: "/v1/batches", body: body, headers: headers)
        guard answer.status == 200 || answer.status == 201 else {
            let later = answer.retryAfter.map { " (retry after \(Int($0)) s)" } ?? ""
            throw ClientError.upload("batch refused by the gateway (HTTP \(answer.status)): \(answer.detail)\(later)")
        }
        return answer
    }

    /// The seven signed lines of `docs/wire-format.md` section 2.
    public static func signedMessage(method: String, path: String, contentSHA256: String, timestamp: String, nonce: String, installId: String) -> Data {
        Data(["TANDEM-P256-SHA256-V1", method.uppercased(), path, contentSHA256, timestamp, nonce, installId].joined(separator: "\n").utf8)
    }

    func signingHeaders(method: String, path: String, body: Data) throws -> [String: String] {
        let digest = TandemCrypto.sha256(body).tandemHex
        let timestamp = String(Int(Date().timeIntervalSince1970))
        let nonce = TandemCrypto.SecureRandom.bytes(16).tandemHex
        let message = Self.signedMessage(method: method, path: path, contentSHA256: digest, timestamp: timestamp, nonce: nonce, installId: installId)
        return [
            "X-Tandem-Install": installId, "X-Tandem-Timestamp": timestamp, "X-Tandem-Nonce": nonce,
            "X-Tandem-Content-SHA256": digest,
            "X-Tandem-Signature": try signer.signature(for: message).derRepresentation.base64EncodedString(),
        ]
    }

    /// One request with retries: network errors, 429 and 5xx are retried after `Retry-After` seconds
    /// when the gateway names them (up to `maxRetryAfter`), else after base * 2^attempt (capped, with
    /// jitter); other answers return.
    func send(method: String, path: String, body: Data, headers: [String: String]) throws -> Answer {
        var attempt = 0
        while true {
            attempt += 1
            var request = URLRequest(url: gateway.appendingPathComponent(String(path.dropFirst())))
            request.httpMethod = method
            request.httpBody = body
            for (k, v) in headers.merging(try signingHeaders(method: method, path: path, body: body), uniquingKeysWith: { $1 }) {
                request.setValue(v, forHTTPHeaderField: k)
            }
            let result = perform(request)
            var retryAfter: TimeInterval?
            switch result {
            case .success(let (response, data)):
                let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
                let status = response.statusCode
                retryAfter = response.value(forHTTPHeaderField: "Retry-After").flatMap(TimeInterval.init)
                let answer = Answer(status: status, json: json, attempts: attempt, retryAfter: retryAfter)
                guard status == 429 || status >= 500, attempt < maxAttempts else { return answer }
                if let wait = retryAfter, wait > maxRetryAfter { return answer }
            case .failure(let error):
                guard attempt < maxAttempts else {
                    throw ClientError.upload("gateway \(gateway.absoluteString) unreachable after \(attempt) attempts (\(error.localizedDescription)): check the URL and that it runs")
                }
            }
            let backoff = min(maxDelay, baseDelay * pow(2, Double(attempt - 1))) * (0.5 + TandemCrypto.SecureRandom.uniform() / 2)
            sleep(retryAfter.map { max(0, $0) } ?? backoff)
        }
    }

    func perform(_ request: URLRequest) -> Result<(HTTPURLResponse, Data), Error> {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<(HTTPURLResponse, Data), Error> = .failure(ClientError.upload("no answer"))
        session.dataTask(with: request) { data, response, error in
            if let error { result = .failure(error) }
            else if let http = response as? HTTPURLResponse { result = .success((http, data ?? Data())) }
            done.signal()
        }.resume()
        done.wait()
        return result
    }
}
