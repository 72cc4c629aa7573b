import XCTest
@testable import TandemKit

final class SmokeTests: XCTestCase {
    func testVersionIsSet() { XCTAssertFalse(TandemKit.version.isEmpty) }
}
