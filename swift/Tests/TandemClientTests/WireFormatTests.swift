import XCTest
@testable import TandemClient

final class WireFormatTests: XCTestCase {
    func batch(_ values: [Double]) throws -> WireBatch {
        let n = values.count
        return try WireBatch(header: .init(task: "har/v1+x", policy: .object(["name": .string("pseudonymized/v1")]),
                                           pseudonym: String(repeating: "ab", count: 32), keyId: "k1", clientBatchId: "b-1",
                                           createdAt: WireBatch.timestamp(Date(timeIntervalSince1970: 1_764_766_800)), rowCount: n),
                             columns: ["window_id": .strings((0..<n).map { String(format: "%032x", $0) }),
                                       "captured_at": .milliseconds((0..<n).map { 1_764_766_800_000 + Int64($0) * 2560 }),
                                       "f": .numbers(values), "label": .strings(Array(repeating: "walking", count: n))])
    }

    /// Every double comes back with the same bits: hard cases (subnormals, extremes, 0.1 + 0.2, -0).
    func testRoundTripIsExactForEveryDouble() throws {
        var values: [Double] = [0.1 + 0.2, 1e-310, -Double.leastNonzeroMagnitude, .greatestFiniteMagnitude, -0.0, 5e-324,
                                123456789.123456789, 1.0 / 3.0, -1.5e-07, 2.0]
        var random = SplitMix(state: 42)
        values += (0..<2000).map { _ in Double(bitPattern: random.next()) }.filter(\.isFinite)
        let sent = try batch(values)
        XCTAssertEqual(sent.header.createdAt, "2025-12-03T13:00:00Z")
        let back = try WireBatch.decode(body: sent.body())
        guard case .numbers(let got) = back.columns["f"]! else { return XCTFail("not numbers") }
        XCTAssertEqual(got.map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertEqual(back.header, sent.header)
        XCTAssertEqual(try sent.body(), try sent.body())  // the same batch, the same bytes (a retry needs it)
    }

    func testRefusesWhatTheGatewayWould() throws {
        XCTAssertThrowsError(try batch([.nan])) { XCTAssertTrue("\($0)".contains("non-finite")) }
        XCTAssertThrowsError(try batch([])) { XCTAssertTrue("\($0)".contains("at least one row")) }
        var b = try batch([1, 2])
        b.columns["label"] = .strings(["walking"])
        XCTAssertThrowsError(try b.validate()) { XCTAssertTrue("\($0)".contains("header says 2 rows")) }
    }

    func testGzipReadsPythonsAndRoundTrips() throws {
        let python = Data(tandemHexString: PolicyFixtures.shared.gzip_hex)!
        let plain = try Gzip.decompress(python)
        let unit = Data("tandem wire batch ".utf8) + Data([0, 1, 0xff])
        XCTAssertEqual(plain, Data((0..<50).flatMap { _ in unit }))
        var random = SplitMix(state: 1)
        let data = Data((0..<300_000).map { _ in UInt8(truncatingIfNeeded: random.next() % 7) })
        let packed = try Gzip.compress(data)
        XCTAssertEqual(Array(packed.prefix(2)), [0x1f, 0x8b])
        XCTAssertLessThan(packed.count, data.count)
        XCTAssertEqual(try Gzip.decompress(packed), data)
        XCTAssertThrowsError(try Gzip.decompress(packed.prefix(packed.count / 2)))
    }
}

extension Data {
    init?(tandemHexString hex: String) {
        var out = Data()
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            guard let byte = UInt8(hex[i..<j], radix: 16) else { return nil }
            out.append(byte)
            i = j
        }
        self = out
    }
}
