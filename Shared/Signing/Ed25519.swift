import CSodium
import Foundation

/// What went wrong with a key or a signature.
public struct SigningError: Error, Sendable, CustomStringConvertible {
    public var problem: String
    public init(_ problem: String) { self.problem = problem }
    public var description: String { problem }
}

/// libsodium is initialised once per process before any key is used (sodium_init is idempotent and thread-safe).
let sodiumReady: Bool = sodium_init() >= 0

/// An Ed25519 secret key (libsodium's 64 bytes: seed and public key). It signs; it never enters Redis.
public struct SigningKey: Sendable {
    let secret: [UInt8]
    public let publicKey: VerifyingKey

    /// A fresh key pair.
    public static func generate() throws -> SigningKey {
        guard sodiumReady else { throw SigningError("libsodium failed to initialise") }
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var secret = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        guard crypto_sign_keypair(&publicKey, &secret) == 0 else { throw SigningError("crypto_sign_keypair failed") }
        return SigningKey(secret: secret, publicKey: VerifyingKey(checked: publicKey))
    }

    /// From its hex text (128 hex digits).
    public init(hex: String) throws {
        guard sodiumReady else { throw SigningError("libsodium failed to initialise") }
        guard let secret = Hex.decode(hex), secret.count == Int(crypto_sign_SECRETKEYBYTES) else {
            throw SigningError("a signing key is \(2 * Int(crypto_sign_SECRETKEYBYTES)) hex digits")
        }
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        guard crypto_sign_ed25519_sk_to_pk(&publicKey, secret) == 0 else { throw SigningError("not an Ed25519 secret key") }
        self.init(secret: secret, publicKey: VerifyingKey(checked: publicKey))
    }

    init(secret: [UInt8], publicKey: VerifyingKey) {
        self.secret = secret
        self.publicKey = publicKey
    }

    /// Reads a key file written by `hex` (whitespace around it ignored).
    public init(contentsOf path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw SigningError("cannot read the signing key file \(path)") }
        do { try self.init(hex: text.trimmingCharacters(in: .whitespacesAndNewlines)) } catch { throw SigningError("\(path): \(error)") }
    }

    public var hex: String { Hex.encode(secret) }

    /// The detached signature (64 bytes) of `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
        _ = crypto_sign_detached(&signature, nil, message, UInt64(message.count), secret)
        return signature
    }
}

/// An Ed25519 public key: verifies what the matching SigningKey signed.
public struct VerifyingKey: Sendable, Equatable {
    public let bytes: [UInt8]

    init(checked bytes: [UInt8]) { self.bytes = bytes }

    /// From its 32 bytes (as carried in a rollout group).
    public init(bytes: [UInt8]) throws {
        guard sodiumReady else { throw SigningError("libsodium failed to initialise") }
        guard bytes.count == Int(crypto_sign_PUBLICKEYBYTES) else {
            throw SigningError("a public key is \(Int(crypto_sign_PUBLICKEYBYTES)) bytes, not \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// From its hex text (64 hex digits).
    public init(hex: String) throws {
        guard sodiumReady else { throw SigningError("libsodium failed to initialise") }
        guard let bytes = Hex.decode(hex.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == Int(crypto_sign_PUBLICKEYBYTES) else {
            throw SigningError("a public key is \(2 * Int(crypto_sign_PUBLICKEYBYTES)) hex digits")
        }
        self.bytes = bytes
    }

    public var hex: String { Hex.encode(bytes) }

    public func isValid(signature: [UInt8], of message: [UInt8]) -> Bool {
        guard signature.count == Int(crypto_sign_BYTES) else { return false }
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), bytes) == 0
    }
}

/// Lower-case hex text of bytes, as keys and signatures are written everywhere.
public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    public static func decode(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
