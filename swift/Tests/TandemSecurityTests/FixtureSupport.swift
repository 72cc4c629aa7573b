import Foundation
import XCTest

/// Fixtures/security_fixtures.json, made by Fixtures/make_fixtures.py with the server's Python code.
enum SecurityFixtures {
    static let root: [String: Any] = {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("security_fixtures.json")
        return try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }()

    static func section(_ name: String) -> [String: Any] { root[name] as! [String: Any] }
    static var key: Data { Data(tandemHex: root["key"] as! String)! }
    static func hex(_ section: String, _ name: String) -> Data { Data(tandemHex: self.section(section)[name] as! String)! }
}
