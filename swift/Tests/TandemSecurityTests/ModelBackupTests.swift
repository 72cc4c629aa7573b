import Foundation
import XCTest
@testable import TandemSecurity

final class ModelBackupTests: XCTestCase {
    let key = SecurityFixtures.key
    func blob(_ name: String) -> Data { SecurityFixtures.hex("backups", name) }
    var base: Data { blob("base") }
    var personal: Data { blob("personal") }

    func testPythonBackupRestores() throws {
        let r = try ModelBackup.restore(blob("counter_5"), key: key, installedBase: base, keyID: "device-key-1", minimumCounter: 5)
        XCTAssertEqual(r.model, personal)
        XCTAssertEqual(r.metadata.counter, 5)
        XCTAssertEqual(r.metadata.baseVersion, "1.4.0")
        XCTAssertEqual(r.metadata.sampleCount, 48)
        XCTAssertEqual(r.metadata.createdAt, "2026-12-03T12:00:00+00:00")
        XCTAssertEqual(try ModelBackup.readHeader(blob("counter_5"))["format_version"], 3)
    }

    func testSwiftBackupRoundTripsAndChecksTheBase() throws {
        let made = try ModelBackup.create(personal: personal, base: base, baseVersion: "2.0", pseudonym: "p", sampleCount: 3,
                                          counter: 2, key: key, keyID: "k2", createdAt: Date(timeIntervalSince1970: 1.5))
        let r = try ModelBackup.restore(made, key: key, installedBase: base, minimumCounter: 2)
        XCTAssertEqual(r.model, personal)
        XCTAssertEqual(r.metadata.createdAt, "1970-01-01T00:00:01.500000+00:00")
        XCTAssertThrowsError(try ModelBackup.restore(made, key: key, installedBase: blob("other_base"))) {
            guard case BackupError.incompatibleBase = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try ModelBackup.open(made, key: key, keyID: "other")) {
            guard case BackupError.wrongKeyID = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try ModelBackup.create(personal: Data("junk".utf8), base: base, baseVersion: "2", pseudonym: "p",
                                                    sampleCount: 1, counter: 1, key: key, keyID: "k")) {
            XCTAssertEqual($0 as? BackupError, .notAModel)
        }
    }

    func testSixteenByteKeyIsRefused() {
        XCTAssertThrowsError(try ModelBackup.restore(blob("counter_5"), key: key.prefix(16), installedBase: base)) {
            XCTAssertEqual($0 as? BackupError, .keyLength(16))
        }
        XCTAssertThrowsError(try ModelBackup.create(personal: personal, base: base, baseVersion: "1", pseudonym: "p",
                                                    sampleCount: 1, counter: 1, key: key.prefix(16), keyID: "k")) {
            XCTAssertEqual($0 as? BackupError, .keyLength(16))
        }
    }

    func testRollbackToAnOlderGenuineBackupIsRefused() throws {
        XCTAssertEqual(try ModelBackup.restore(blob("counter_6"), key: key, installedBase: base, minimumCounter: 6).metadata.counter, 6)
        XCTAssertThrowsError(try ModelBackup.restore(blob("counter_5"), key: key, installedBase: base, minimumCounter: 6)) {
            XCTAssertEqual($0 as? BackupError, .rolledBack(counter: 5, minimum: 6))
        }
    }

    func testFormat2StaysReadableAsCounterZero() throws {
        let r = try ModelBackup.restore(blob("format_2"), key: key, installedBase: base)
        XCTAssertEqual(r.metadata.counter, 0)
        XCTAssertEqual(r.model, personal)
        XCTAssertThrowsError(try ModelBackup.restore(blob("format_2"), key: key, installedBase: base, minimumCounter: 1))
    }

    func testUnknownMetadataFieldsAreIgnored() throws {
        let r = try ModelBackup.restore(blob("unknown_fields"), key: key, installedBase: base)
        XCTAssertEqual(r.metadata.counter, 9)
        XCTAssertEqual(r.model, personal)
    }

    func testBadContentsAreBackupErrors() {
        XCTAssertThrowsError(try ModelBackup.restore(blob("not_a_model"), key: key, installedBase: base)) {
            XCTAssertEqual($0 as? BackupError, .notAModel)
        }
        for name in ["metadata_not_json", "metadata_missing_field", "metadata_wrong_type", "metadata_no_counter",
                     "metadata_length_past_end"] {
            XCTAssertThrowsError(try ModelBackup.restore(blob(name), key: key, installedBase: base), name) {
                guard case BackupError.malformed = $0 else { return XCTFail("\(name): \($0)") }
            }
        }
    }

    func testTamperedBytesAndGarbage() {
        var bad = blob("counter_5")
        bad[bad.count - 1] ^= 1
        XCTAssertThrowsError(try ModelBackup.restore(bad, key: key, installedBase: base)) {
            guard case BackupError.tampered = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try ModelBackup.restore(Data("garbage".utf8), key: key, installedBase: base)) {
            XCTAssertEqual($0 as? BackupError, .notABackup)
        }
    }

    func testCoreMLPayloadCheck() {
        XCTAssertTrue(CoreMLPayload.isModel(personal))
        XCTAssertFalse(CoreMLPayload.isModel(Data([0x08, 0x04])))  // a spec version and nothing else
        XCTAssertFalse(CoreMLPayload.isModel(Data([0xff, 0xff, 0xff])))
        XCTAssertFalse(CoreMLPayload.isModel(personal.dropLast()))  // a length runs past the end
    }
}

final class BackupCounterTests: XCTestCase {
    func testCounterGrowsWithBackupsAndRefusesOlderRestores() throws {
        let key = SecurityFixtures.key, base = SecurityFixtures.hex("backups", "base"), personal = SecurityFixtures.hex("backups", "personal")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-counter-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let counters = FileBackupCounter(url: folder.appendingPathComponent("counter.json"))
        XCTAssertEqual(try counters.load(), 0)
        let first = try ModelBackup.createNext(personal: personal, base: base, baseVersion: "1", pseudonym: "p", sampleCount: 1,
                                               key: key, keyID: "k", counters: counters)
        let second = try ModelBackup.createNext(personal: personal, base: base, baseVersion: "1", pseudonym: "p", sampleCount: 1,
                                                key: key, keyID: "k", counters: counters)
        XCTAssertEqual(try counters.load(), 2)
        XCTAssertEqual(try ModelBackup.restoreAdvancing(second, key: key, installedBase: base, counters: counters).metadata.counter, 2)
        XCTAssertThrowsError(try ModelBackup.restoreAdvancing(first, key: key, installedBase: base, counters: counters)) {
            XCTAssertEqual($0 as? BackupError, .rolledBack(counter: 1, minimum: 2))
        }
        // a fresh install that only has its keychain counter restores the Python-made backup 6 and moves to 6
        XCTAssertEqual(try ModelBackup.restoreAdvancing(SecurityFixtures.hex("backups", "counter_6"), key: key, installedBase: base,
                                                        counters: counters).metadata.counter, 6)
        XCTAssertEqual(try counters.load(), 6)
        try Data("nope".utf8).write(to: counters.url)
        XCTAssertThrowsError(try counters.load())
    }
}

/// Hostile bytes never crash the parsers: every truncation and many seeded random mutations of a
/// backup end in a `BackupError` (never a trap, never a success with other bytes).
final class BackupHostileBytesTests: XCTestCase {
    struct SeededGenerator: RandomNumberGenerator {  // deterministic, so a failure reproduces
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e3779b97f4a7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
            z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
            return z ^ (z >> 31)
        }
    }

    func testTruncationsAndMutationsAreBackupErrors() {
        let key = SecurityFixtures.key, base = SecurityFixtures.hex("backups", "base")
        let blob = SecurityFixtures.hex("backups", "counter_5")
        for length in stride(from: 0, to: blob.count, by: 7) {
            XCTAssertThrowsError(try ModelBackup.restore(blob.prefix(length), key: key, installedBase: base)) {
                XCTAssertTrue($0 is BackupError, "length \(length): \($0)")
            }
        }
        var rng = SeededGenerator(state: 20)
        for round in 0..<500 {
            var bad = blob
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bad[Int.random(in: 0..<bad.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if bad == blob { continue }
            XCTAssertThrowsError(try ModelBackup.restore(bad, key: key, installedBase: base)) {
                XCTAssertTrue($0 is BackupError, "round \(round): \($0)")
            }
        }
        for round in 0..<200 {
            let junk = Data((0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            XCTAssertThrowsError(try ModelBackup.restore(Data("TNDB".utf8) + junk, key: key, installedBase: base), "junk \(round)")
            _ = CoreMLPayload.isModel(junk)  // must not trap
        }
    }
}
