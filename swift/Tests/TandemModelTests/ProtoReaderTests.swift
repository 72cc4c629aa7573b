import XCTest
@testable import TandemModel

final class ProtoReaderTests: XCTestCase {
    private func fields(_ bytes: [UInt8]) throws -> [(Int, ProtoValue)] {
        var reader = ProtoReader(bytes)
        var out: [(Int, ProtoValue)] = []
        while let f = try reader.next() { out.append(f) }
        return out
    }

    func testVarintsIncludingMultiByteAndNegative() throws {
        // field 1 = 150 (the protobuf docs' example), field 2 = -1 as int64 (ten bytes)
        let f = try fields([0x08, 0x96, 0x01, 0x10] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
        XCTAssertEqual(f.map(\.0), [1, 2])
        XCTAssertEqual(f[0].1.int, 150)
        XCTAssertEqual(f[1].1.int, -1)
    }

    func testFixedWidthAndLengthDelimited() throws {
        let half: Float = 0.5
        let bits = half.bitPattern
        let third = 1.0 / 3.0
        let dbits = third.bitPattern
        let bytes: [UInt8] = [0x0D] + (0..<4).map { UInt8(truncatingIfNeeded: bits >> (8 * $0)) }
            + [0x11] + (0..<8).map { UInt8(truncatingIfNeeded: dbits >> (8 * $0)) }
            + [0x1A, 0x02, 0x68, 0x69]  // field 3 = "hi"
        let f = try fields(bytes)
        XCTAssertEqual(f[0].1.float, 0.5)
        XCTAssertEqual(f[1].1.double, third)
        XCTAssertEqual(f[2].1.string, "hi")
    }

    func testRepeatedFloatsPackedAndUnpackedGiveTheSameValues() throws {
        let values: [Float] = [1.5, -2.25, 3e-8]
        let raw = values.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * $0)) } }
        var packed: [Double] = [], unpacked: [Double] = []
        for (_, v) in try fields([0x0A, UInt8(raw.count)] + raw) { try Repeated.floats(v, into: &packed) }
        for k in 0..<3 {
            for (_, v) in try fields([0x0D] + Array(raw[4 * k..<4 * k + 4])) { try Repeated.floats(v, into: &unpacked) }
        }
        XCTAssertEqual(packed, values.map(Double.init))
        XCTAssertEqual(unpacked, packed)
    }

    func testMalformedInputIsRefusedNotCrashed() {
        XCTAssertThrowsError(try fields([0x08, 0x96])) { XCTAssertEqual($0 as? ProtoError, .truncated(offset: 1)) }
        XCTAssertThrowsError(try fields([0x0A, 0x05, 0x01])) { XCTAssertEqual($0 as? ProtoError, .badLength(5, offset: 2)) }
        XCTAssertThrowsError(try fields([0x0B])) { XCTAssertEqual($0 as? ProtoError, .badWireType(3, offset: 0)) }
        XCTAssertThrowsError(try fields([0x08] + [UInt8](repeating: 0xFF, count: 11)))
        XCTAssertThrowsError(try ModelSpec(bytes: [])) { XCTAssertEqual($0 as? ModelSpecError, .notAModel) }
        XCTAssertThrowsError(try ModelSpec(bytes: Array("not a model at all".utf8)))
    }
}
