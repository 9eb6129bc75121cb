#include <harrow/ipc/frame_seal.h>

#include <kj/debug.h>

#include <sodium.h>

namespace harrow {

namespace {

// The IETF ChaCha20 nonce of frame `n` under the direction's subkey: what XChaCha20's nonce
// (16 zero bytes | n) becomes after HChaCha20.
struct Nonce {
  kj::byte bytes[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
  explicit Nonce(uint64_t n) {
    for (int i = 0; i < 8; ++i) bytes[4 + i] = kj::byte(n >> (8 * i));
  }
};

// Poly1305 over the AEAD's layout: associated data, padding, ciphertext, padding, both lengths.
class Mac {
public:
  Mac(const kj::byte* subkey, const Nonce& nonce) {
    kj::byte block0[64];
    crypto_stream_chacha20_ietf(block0, sizeof(block0), nonce.bytes, subkey);
    crypto_onetimeauth_poly1305_init(&state, block0);
    sodium_memzero(block0, sizeof(block0));
  }
  ~Mac() { sodium_memzero(&state, sizeof(state)); }
  KJ_DISALLOW_COPY(Mac);

  void add(kj::ArrayPtr<const kj::byte> bytes) {
    crypto_onetimeauth_poly1305_update(&state, bytes.begin(), bytes.size());
  }
  void pad(uint64_t length) {
    static const kj::byte zeros[16] = {};
    crypto_onetimeauth_poly1305_update(&state, zeros, (0x10 - length) & 0xf);
  }
  void finish(uint64_t adLength, uint64_t messageLength, kj::byte* tag) {
    kj::byte lengths[16];
    for (int i = 0; i < 8; ++i) {
      lengths[i] = kj::byte(adLength >> (8 * i));
      lengths[8 + i] = kj::byte(messageLength >> (8 * i));
    }
    crypto_onetimeauth_poly1305_update(&state, lengths, sizeof(lengths));
    crypto_onetimeauth_poly1305_final(&state, tag);
  }

private:
  crypto_onetimeauth_poly1305_state state;
};

}  // namespace

FrameSeal::FrameSeal(kj::ArrayPtr<const kj::byte> key, Mode mode) : sealMode(mode) {
  KJ_REQUIRE(key.size() == KEY_BYTES, "a frame key has 32 bytes", key.size());
  KJ_ASSERT(sodium_init() >= 0, "libsodium failed to initialise");
  static const kj::byte zeros[16] = {};
  crypto_core_hchacha20(subkey, zeros, key.begin(), nullptr);
}

FrameSeal::~FrameSeal() noexcept { sodium_memzero(subkey, sizeof(subkey)); }

void FrameSeal::tag(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, kj::byte* tagOut) {
  KJ_REQUIRE(sealMode == AUTHENTICATE);
  Mac mac(subkey, Nonce(counter++));
  uint64_t length = 0;
  for (auto piece : pieces) {
    mac.add(piece);
    length += piece.size();
  }
  mac.pad(length);
  mac.finish(length, 0, tagOut);
}

void FrameSeal::seal(kj::ArrayPtr<kj::byte> frame, size_t tableBytes, kj::byte* tagOut) {
  KJ_REQUIRE(sealMode == ENCRYPT && tableBytes <= frame.size());
  Nonce nonce(counter++);
  Mac mac(subkey, nonce);
  auto table = frame.slice(0, tableBytes);
  auto body = frame.slice(tableBytes, frame.size());
  crypto_stream_chacha20_ietf_xor_ic(body.begin(), body.begin(), body.size(), nonce.bytes, 1,
                                     subkey);
  mac.add(table);
  mac.pad(table.size());
  mac.add(body);
  mac.pad(body.size());
  mac.finish(table.size(), body.size(), tagOut);
}

bool FrameSeal::open(kj::ArrayPtr<kj::byte> frame, size_t tableBytes, const kj::byte* tag) {
  if (failed || tableBytes > frame.size()) return false;
  Nonce nonce(counter++);
  Mac mac(subkey, nonce);
  kj::byte expected[TAG_BYTES];
  if (sealMode == AUTHENTICATE) {
    mac.add(frame);
    mac.pad(frame.size());
    mac.finish(frame.size(), 0, expected);
  } else {
    auto table = frame.slice(0, tableBytes);
    auto body = frame.slice(tableBytes, frame.size());
    mac.add(table);
    mac.pad(table.size());
    mac.add(body);
    mac.pad(body.size());
    mac.finish(table.size(), body.size(), expected);
  }
  if (crypto_verify_16(expected, tag) != 0) {
    failed = true;
    return false;
  }
  if (sealMode == ENCRYPT) {
    auto body = frame.slice(tableBytes, frame.size());
    crypto_stream_chacha20_ietf_xor_ic(body.begin(), body.begin(), body.size(), nonce.bytes, 1,
                                       subkey);
  }
  return true;
}

}  // namespace harrow
