import XCTest
@testable import TandemClient

final class TandemClientSmokeTests: XCTestCase {
    func testFixturesAreBundled() {
        XCTAssertNotNil(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    }
}
