import XCTest
@testable import TandemFeatures

final class TandemFeaturesSmokeTests: XCTestCase {
    func testFixturesAreBundled() {
        XCTAssertNotNil(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    }
}
