import Foundation
#if canImport(CTandemZlib)
import CTandemZlib
#elseif canImport(Compression)
import Compression
#endif

/// gzip (RFC 1952) of a wire batch: zlib on Linux, Apple's Compression (raw deflate) plus the gzip
/// header and trailer on Apple platforms.
public enum Gzip {
    public static func compress(_ data: Data) throws -> Data {
        #if canImport(CTandemZlib)
        return try zlibRun(data, compressing: true)
        #elseif canImport(Compression)
        var out = Data([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])  // magic, deflate, no flags, no mtime, unknown OS
        out.append(try appleRaw(data, compress: true))
        withUnsafeBytes(of: crc32(data).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: data.count).littleEndian) { out.append(contentsOf: $0) }
        return out
        #endif
    }

    public static func decompress(_ data: Data) throws -> Data {
        #if canImport(CTandemZlib)
        return try zlibRun(data, compressing: false)
        #elseif canImport(Compression)
        let bytes = [UInt8](data)
        guard bytes.count >= 18, bytes[0] == 0x1f, bytes[1] == 0x8b, bytes[2] == 8, bytes[3] == 0 else {
            throw ClientError.wire("not a gzip stream (or one with optional header fields)")
        }
        let plain = try appleRaw(Data(bytes[10..<(bytes.count - 8)]), compress: false)
        let crc = bytes[(bytes.count - 8)...].prefix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        guard crc == crc32(plain) else { throw ClientError.wire("gzip checksum mismatch") }
        return plain
        #endif
    }

    #if canImport(CTandemZlib)
    static func zlibRun(_ input: Data, compressing: Bool) throws -> Data {
        var stream = z_stream()
        // windowBits 15 + 16: a gzip wrapper; level 6 (zlib's default)
        let started = compressing
            ? deflateInit2_(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            : inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard started == Z_OK else { throw ClientError.wire("zlib could not start (\(started))") }
        defer { _ = compressing ? deflateEnd(&stream) : inflateEnd(&stream) }
        var output = Data()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var input = [UInt8](input)
        var status: Int32 = Z_OK
        input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    status = compressing ? deflate(&stream, Z_FINISH) : inflate(&stream, Z_NO_FLUSH)
                    output.append(outBuf.baseAddress!, count: outBuf.count - Int(stream.avail_out))
                }
            } while status == Z_OK && (stream.avail_in > 0 || stream.avail_out == 0)
        }
        guard status == Z_STREAM_END else {
            throw ClientError.wire(compressing ? "gzip failed (zlib \(status))" : "truncated or corrupt gzip stream")
        }
        return output
    }
    #elseif canImport(Compression)
    /// Raw deflate (RFC 1951: Compression's `.zlib`), the body of a gzip member.
    static func appleRaw(_ input: Data, compress: Bool) throws -> Data {
        var output = Data()
        let filter = try OutputFilter(compress ? .compress : .decompress, using: .zlib) { output.append($0 ?? Data()) }
        try filter.write(input)
        try filter.finalize()
        return output
    }

    static let crcTable: [UInt32] = (0..<256).map { n in
        (0..<8).reduce(UInt32(n)) { c, _ in c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    }

    static func crc32(_ data: Data) -> UInt32 {
        ~data.reduce(~UInt32(0)) { crcTable[Int(($0 ^ UInt32($1)) & 0xff)] ^ ($0 >> 8) }
    }
    #endif
}
