#if canImport(CryptoKit)
import CryptoKit
#else
import CTandemCrypto
import CTandemZlib
#endif

/// The system libraries behind TandemKit on this platform (printed by `tandem-device --version`).
public enum Platform {
    #if canImport(CryptoKit)
    public static let crypto = "CryptoKit"
    #else
    public static let crypto = "OpenSSL libcrypto " + String(cString: OpenSSL_version(0))
    public static let zlib = "zlib " + String(cString: zlibVersion())
    #endif
}
