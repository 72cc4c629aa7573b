import Foundation
import TandemKit

/// `tandem-device pseudonym USER_ID...`: each user id's pseudonym (HMAC-SHA256 under
/// TANDEM_PSEUDONYM_KEY, as the server's `pseudonymize`), one per line.
func pseudonymCommand(_ args: [String]) throws -> Int32 {
    let options = try SecurityArguments(args, valued: [], allowPositional: true)
    guard !options.positional.isEmpty else { throw SecurityCommandError("usage: tandem-device pseudonym USER_ID...") }
    guard let key = ProcessInfo.processInfo.environment["TANDEM_PSEUDONYM_KEY"], !key.isEmpty else {
        throw SecurityCommandError("TANDEM_PSEUDONYM_KEY is not set: export the devices' pseudonym key (a secret)")
    }
    for userID in options.positional {
        print(try Pseudonyms.pseudonymize(userID, key: Data(key.utf8)))
    }
    return 0
}
