// Linux: TandemCrypto over OpenSSL 3's libcrypto (EVP interfaces only).
#if !canImport(CryptoKit)
import CTandemCrypto
import Foundation

/// Calls `body` with a non-null pointer to `data`'s bytes and their count (OpenSSL wants a pointer
/// even for zero bytes).
@inline(__always)
func withBytes<R>(_ data: Data, _ body: (UnsafePointer<UInt8>, Int) throws -> R) rethrows -> R {
    if data.isEmpty {
        var zero: UInt8 = 0
        return try withUnsafePointer(to: &zero) { try body($0, 0) }
    }
    return try data.withUnsafeBytes { try body($0.bindMemory(to: UInt8.self).baseAddress!, $0.count) }
}

/// The newest OpenSSL error as one line (and the queue cleared).
func openSSLError(_ what: String) -> CryptoError {
    let code = ERR_get_error()
    ERR_clear_error()
    guard code != 0 else { return .backend(what) }
    var buffer = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buffer, buffer.count)
    return .backend("\(what): \(String(cString: buffer))")
}

enum Backend {
    // MARK: digests

    static func sha256(_ data: Data) -> Data {
        var out = Data(count: 32)
        var length: UInt32 = 0
        let ok = withBytes(data) { p, n in
            out.withUnsafeMutableBytes { EVP_Digest(p, n, $0.bindMemory(to: UInt8.self).baseAddress, &length, EVP_sha256(), nil) }
        }
        precondition(ok == 1 && length == 32, "EVP_Digest(SHA-256) failed")
        return out
    }

    static func hmacSHA256(key: Data, message: Data) -> Data {
        var out = Data(count: 32)
        var length = 0
        let result = withBytes(key) { k, kn in
            withBytes(message) { m, mn in
                out.withUnsafeMutableBytes {
                    EVP_Q_mac(nil, "HMAC", nil, "SHA256", nil, k, kn, m, mn, $0.bindMemory(to: UInt8.self).baseAddress, 32, &length)
                }
            }
        }
        precondition(result != nil && length == 32, "EVP_Q_mac(HMAC-SHA256) failed")
        return out
    }

    // MARK: AES-256-GCM

    static func aesGCMSeal(_ plaintext: Data, key: Data, nonce: Data, aad: Data) throws -> Data {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw openSSLError("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        try gcmInit(ctx, encrypt: true, key: key, nonce: nonce, aad: aad)
        var out = Data(count: plaintext.count + TandemCrypto.AESGCM.tagBytes)
        let ok: Bool = withBytes(plaintext) { p, n in
            out.withUnsafeMutableBytes { raw -> Bool in
                let o = raw.bindMemory(to: UInt8.self).baseAddress!
                var written: Int32 = 0, final: Int32 = 0
                if n > 0 && EVP_EncryptUpdate(ctx, o, &written, p, Int32(n)) != 1 { return false }
                guard EVP_EncryptFinal_ex(ctx, o + Int(written), &final) == 1 else { return false }
                return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, o + n) == 1
            }
        }
        guard ok else { throw openSSLError("AES-256-GCM seal") }
        return out
    }

    static func aesGCMOpen(_ sealed: Data, key: Data, nonce: Data, aad: Data) throws -> Data {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw openSSLError("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        try gcmInit(ctx, encrypt: false, key: key, nonce: nonce, aad: aad)
        let n = sealed.count - TandemCrypto.AESGCM.tagBytes
        var tag = [UInt8](sealed.suffix(TandemCrypto.AESGCM.tagBytes))
        var out = Data(count: max(n, 1))
        let ok: Bool = withBytes(sealed) { c, _ in
            out.withUnsafeMutableBytes { raw -> Bool in
                let o = raw.bindMemory(to: UInt8.self).baseAddress!
                var written: Int32 = 0, final: Int32 = 0
                if n > 0 && EVP_DecryptUpdate(ctx, o, &written, c, Int32(n)) != 1 { return false }
                guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, &tag) == 1 else { return false }
                return EVP_DecryptFinal_ex(ctx, o + Int(written), &final) == 1
            }
        }
        ERR_clear_error()
        guard ok else { throw CryptoError.authenticationFailed }
        return out.prefix(n)
    }

    private static func gcmInit(_ ctx: OpaquePointer, encrypt: Bool, key: Data, nonce: Data, aad: Data) throws {
        let initFn = encrypt ? EVP_EncryptInit_ex : EVP_DecryptInit_ex
        let updateFn = encrypt ? EVP_EncryptUpdate : EVP_DecryptUpdate
        guard initFn(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1,
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, Int32(nonce.count), nil) == 1
        else { throw openSSLError("AES-256-GCM init") }
        let ok = withBytes(key) { k, _ in withBytes(nonce) { iv, _ in initFn(ctx, nil, nil, k, iv) } }
        guard ok == 1 else { throw openSSLError("AES-256-GCM key") }
        if !aad.isEmpty {
            var ignored: Int32 = 0
            let added = withBytes(aad) { a, n in updateFn(ctx, nil, &ignored, a, Int32(n)) }
            guard added == 1 else { throw openSSLError("AES-256-GCM associated data") }
        }
    }

    // MARK: Ed25519

    private static func ed25519Key(public raw: Data) -> OpaquePointer? {
        withBytes(raw) { EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0, $1) }
    }

    private static func ed25519Key(private raw: Data) -> OpaquePointer? {
        withBytes(raw) { EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0, $1) }
    }

    static func ed25519CheckPublic(_ raw: Data) throws {
        guard let key = ed25519Key(public: raw) else { throw openSSLError("not an Ed25519 public key") }
        EVP_PKEY_free(key)
    }

    static func ed25519PublicFromPrivate(_ raw: Data) throws -> Data {
        guard let key = ed25519Key(private: raw) else { throw openSSLError("not an Ed25519 private key") }
        defer { EVP_PKEY_free(key) }
        var out = Data(count: 32)
        var length = 32
        let ok = out.withUnsafeMutableBytes { EVP_PKEY_get_raw_public_key(key, $0.bindMemory(to: UInt8.self).baseAddress, &length) }
        guard ok == 1, length == 32 else { throw openSSLError("Ed25519 public key") }
        return out
    }

    static func ed25519Sign(_ message: Data, privateKey: Data) throws -> Data {
        guard let key = ed25519Key(private: privateKey) else { throw openSSLError("not an Ed25519 private key") }
        defer { EVP_PKEY_free(key) }
        guard let md = EVP_MD_CTX_new() else { throw openSSLError("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(md) }
        var signature = Data(count: 64)
        var length = 64
        let ok = EVP_DigestSignInit(md, nil, nil, nil, key) == 1 && withBytes(message) { m, n in
            signature.withUnsafeMutableBytes { EVP_DigestSign(md, $0.bindMemory(to: UInt8.self).baseAddress, &length, m, n) }
        } == 1
        guard ok, length == 64 else { throw openSSLError("Ed25519 sign") }
        return signature
    }

    static func ed25519Verify(_ signature: Data, message: Data, publicKey: Data) -> Bool {
        guard let key = ed25519Key(public: publicKey), let md = EVP_MD_CTX_new() else { ERR_clear_error(); return false }
        defer { EVP_PKEY_free(key); EVP_MD_CTX_free(md); ERR_clear_error() }
        guard EVP_DigestVerifyInit(md, nil, nil, nil, key) == 1 else { return false }
        return withBytes(signature) { s, sn in withBytes(message) { m, mn in EVP_DigestVerify(md, s, sn, m, mn) } } == 1
    }

    // MARK: P-256

    /// SEC1 ECPrivateKey for a raw scalar on prime256v1; OpenSSL derives the public point when decoding.
    private static func sec1(_ scalar: Data) -> Data {
        Data([0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20]) + scalar
            + Data([0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07])
    }

    private static func p256Key(private scalar: Data) throws -> OpaquePointer {
        let der = sec1(scalar)
        let key: OpaquePointer? = withBytes(der) { p, n in
            var cursor: UnsafePointer<UInt8>? = p
            return d2i_PrivateKey(EVP_PKEY_EC, nil, &cursor, n)
        }
        guard let key else { throw openSSLError("not a P-256 private key") }
        return key
    }

    private static func p256Key(public x963: Data) -> OpaquePointer? {
        let der = TandemCrypto.P256PublicKey.spkiPrefix + x963
        return withBytes(der) { p, n in
            var cursor: UnsafePointer<UInt8>? = p
            return d2i_PUBKEY(nil, &cursor, n)
        }
    }

    static func p256Generate() throws -> Data {
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw openSSLError("EVP_PKEY_CTX_new_from_name") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1,
              EVP_PKEY_keygen(ctx, &key) == 1, let key else { throw openSSLError("P-256 key generation") }
        defer { EVP_PKEY_free(key) }
        var bn: OpaquePointer? = nil
        guard EVP_PKEY_get_bn_param(key, "priv", &bn) == 1, let bn else { throw openSSLError("P-256 private scalar") }
        defer { BN_clear_free(bn) }
        var out = Data(count: 32)
        let n = out.withUnsafeMutableBytes { BN_bn2binpad(bn, $0.bindMemory(to: UInt8.self).baseAddress, 32) }
        guard n == 32 else { throw openSSLError("P-256 private scalar") }
        return out
    }

    static func p256PublicFromPrivate(_ scalar: Data) throws -> Data {
        let key = try p256Key(private: scalar)
        defer { EVP_PKEY_free(key) }
        var out = Data(count: 65)
        var length = 0
        let ok = out.withUnsafeMutableBytes {
            EVP_PKEY_get_octet_string_param(key, "encoded-pub-key", $0.bindMemory(to: UInt8.self).baseAddress, 65, &length)
        }
        guard ok == 1, length == 65 else { throw openSSLError("P-256 public key") }
        return out
    }

    static func p256CheckPublic(_ x963: Data) throws {
        guard let key = p256Key(public: x963) else { throw openSSLError("not a point on P-256") }
        EVP_PKEY_free(key)
    }

    static func p256Sign(_ message: Data, privateKey: Data) throws -> Data {
        let key = try p256Key(private: privateKey)
        defer { EVP_PKEY_free(key) }
        guard let md = EVP_MD_CTX_new() else { throw openSSLError("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(md) }
        var signature = Data(count: 80)  // DER of two 32-byte integers is at most 72 bytes
        var length = 80
        let ok = EVP_DigestSignInit(md, nil, EVP_sha256(), nil, key) == 1 && withBytes(message) { m, n in
            signature.withUnsafeMutableBytes { EVP_DigestSign(md, $0.bindMemory(to: UInt8.self).baseAddress, &length, m, n) }
        } == 1
        guard ok else { throw openSSLError("P-256 sign") }
        return signature.prefix(length)
    }

    static func p256Verify(_ der: Data, message: Data, publicKey: Data) -> Bool {
        guard let key = p256Key(public: publicKey), let md = EVP_MD_CTX_new() else { ERR_clear_error(); return false }
        defer { EVP_PKEY_free(key); EVP_MD_CTX_free(md); ERR_clear_error() }
        guard EVP_DigestVerifyInit(md, nil, EVP_sha256(), nil, key) == 1 else { return false }
        return withBytes(der) { s, sn in withBytes(message) { m, mn in EVP_DigestVerify(md, s, sn, m, mn) } } == 1
    }

    static func p256RawFromDER(_ der: Data) throws -> Data {
        let sig: OpaquePointer? = withBytes(der) { p, n in
            var cursor: UnsafePointer<UInt8>? = p
            let parsed = d2i_ECDSA_SIG(nil, &cursor, n)
            // Refuse trailing bytes: a DER signature is exactly one SEQUENCE.
            if let parsed, cursor != p + n { ECDSA_SIG_free(parsed); return nil }
            return parsed
        }
        guard let sig else { ERR_clear_error(); throw CryptoError.invalidInput("not a DER ECDSA signature") }
        defer { ECDSA_SIG_free(sig) }
        var out = Data(count: 64)
        let ok = out.withUnsafeMutableBytes { raw -> Bool in
            let o = raw.bindMemory(to: UInt8.self).baseAddress!
            return BN_bn2binpad(ECDSA_SIG_get0_r(sig), o, 32) == 32 && BN_bn2binpad(ECDSA_SIG_get0_s(sig), o + 32, 32) == 32
        }
        guard ok else { ERR_clear_error(); throw CryptoError.invalidInput("ECDSA signature values exceed 32 bytes") }
        return out
    }

    static func p256DERFromRaw(_ raw: Data) -> Data {
        let sig = ECDSA_SIG_new()!
        defer { ECDSA_SIG_free(sig) }
        let (r, s) = withBytes(raw) { p, _ in (BN_bin2bn(p, 32, nil)!, BN_bin2bn(p + 32, 32, nil)!) }
        ECDSA_SIG_set0(sig, r, s)  // takes ownership of r and s
        let length = i2d_ECDSA_SIG(sig, nil)
        var out = Data(count: Int(length))
        out.withUnsafeMutableBytes { raw in
            var cursor: UnsafeMutablePointer<UInt8>? = raw.bindMemory(to: UInt8.self).baseAddress
            _ = i2d_ECDSA_SIG(sig, &cursor)
        }
        return out
    }

    // MARK: random

    static func randomBytes(_ count: Int) -> Data {
        var out = Data(count: count)
        guard count > 0 else { return out }
        let ok = out.withUnsafeMutableBytes { RAND_bytes($0.bindMemory(to: UInt8.self).baseAddress, Int32(count)) }
        precondition(ok == 1, "RAND_bytes failed: no secure randomness available")
        return out
    }
}
#endif
