import Foundation
import TandemKit

// tandem-device: TandemKit's operations from the command line (tests, debugging a mismatch).
let args = Array(CommandLine.arguments.dropFirst())
if args.first == "--version" { print(TandemKit.version); exit(0) }
FileHandle.standardError.write("usage: tandem-device <command> ...\n".data(using: .utf8)!)
exit(2)
