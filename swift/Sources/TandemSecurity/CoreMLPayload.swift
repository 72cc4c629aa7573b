import Foundation

/// Whether bytes are a Core ML `Model` protobuf, judged at the top level only: every field must be
/// well formed (wire type, varint, length within bounds) and it must name a model type (the `Type`
/// oneof, fields 200 and above, a length-delimited message) — what `DeviceModel.load` requires on
/// the Python side. Enough to refuse a backup whose payload is not an `.mlmodel` before anything
/// tries to load it.
public enum CoreMLPayload {
    public static func isModel(_ bytes: Data) -> Bool {
        let data = [UInt8](bytes)
        var i = 0, hasType = false
        func varint() -> UInt64? {
            var value: UInt64 = 0, shift: UInt64 = 0
            while i < data.count, shift < 64 {
                let b = data[i]; i += 1
                value |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while i < data.count {
            guard let key = varint(), key >> 3 > 0 else { return false }
            let field = key >> 3
            switch key & 7 {
            case 0: guard varint() != nil else { return false }
            case 1: i += 8
            case 5: i += 4
            case 2:
                guard let n = varint(), n <= UInt64(data.count - i) else { return false }
                i += Int(n)
                if field >= 200 { hasType = true }
            default: return false  // groups (3, 4) are not used by Core ML; 6, 7 do not exist
            }
            guard i <= data.count else { return false }
        }
        return hasType
    }
}
