import XCTest
@testable import TandemSecurity

final class TandemSecuritySmokeTests: XCTestCase {
    func testFixturesAreBundled() {
        XCTAssertNotNil(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    }
}
