import Foundation

/// What goes wrong on the sharing side; each description is one line saying what to do.
public enum ClientError: Error, CustomStringConvertible, Equatable {
    case policy(String)
    case budget(String)
    case ledger(String)
    case wire(String)
    case upload(String)

    public var description: String {
        switch self {
        case .policy(let m), .budget(let m), .ledger(let m), .wire(let m), .upload(let m): return m
        }
    }
}
