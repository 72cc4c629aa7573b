import XCTest
@testable import TandemModel

final class TandemModelSmokeTests: XCTestCase {
    func testFixturesAreBundled() {
        XCTAssertNotNil(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    }
}
