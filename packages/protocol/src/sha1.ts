/**
 * SHA-1 (FIPS 180-4) in plain TypeScript, for server choice (protocol §1.3), so the protocol
 * package needs neither `node:crypto` nor a browser's asynchronous `crypto.subtle`. Not for
 * security: rendezvous hashing only needs the same well-spread bits every broker computes.
 * `test/sha1.test.ts` compares it byte for byte with `node:crypto`.
 */

const W = new Int32Array(80)
/** The five state words after the last `digestWords` call. */
const H = new Int32Array(5)
let scratch = new Uint8Array(128)

/**
 * Hashes `data` and leaves the digest in the returned words (big-endian, as SHA-1 defines them;
 * word 0 holds digest bytes 0–3). The array is reused by the next call: copy what you keep.
 */
export function sha1Words(data: Uint8Array): Int32Array {
  const len = data.length
  // Padding: 0x80, zeros, then the bit length as a 64-bit big-endian integer; whole 64-byte blocks.
  const total = (((len + 8) >> 6) + 1) << 6
  if (scratch.length < total) scratch = new Uint8Array(total)
  const m = scratch
  m.set(data, 0)
  m.fill(0, len, total)
  m[len] = 0x80
  const hiBits = Math.floor(len / 0x20000000)
  const loBits = (len << 3) >>> 0
  m[total - 8] = hiBits >>> 24
  m[total - 7] = (hiBits >>> 16) & 0xff
  m[total - 6] = (hiBits >>> 8) & 0xff
  m[total - 5] = hiBits & 0xff
  m[total - 4] = loBits >>> 24
  m[total - 3] = (loBits >>> 16) & 0xff
  m[total - 2] = (loBits >>> 8) & 0xff
  m[total - 1] = loBits & 0xff

  let h0 = 0x67452301
  let h1 = 0xefcdab89 | 0
  let h2 = 0x98badcfe | 0
  let h3 = 0x10325476
  let h4 = 0xc3d2e1f0 | 0
  for (let off = 0; off < total; off += 64) {
    for (let i = 0; i < 16; i++) {
      const p = off + (i << 2)
      W[i] = (m[p]! << 24) | (m[p + 1]! << 16) | (m[p + 2]! << 8) | m[p + 3]!
    }
    for (let i = 16; i < 80; i++) {
      const x = W[i - 3]! ^ W[i - 8]! ^ W[i - 14]! ^ W[i - 16]!
      W[i] = (x << 1) | (x >>> 31)
    }
    let a = h0
    let b = h1
    let c = h2
    let d = h3
    let e = h4
    for (let i = 0; i < 80; i++) {
      let f: number
      let k: number
      if (i < 20) {
        f = (b & c) | (~b & d)
        k = 0x5a827999
      } else if (i < 40) {
        f = b ^ c ^ d
        k = 0x6ed9eba1
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d)
        k = 0x8f1bbcdc | 0
      } else {
        f = b ^ c ^ d
        k = 0xca62c1d6 | 0
      }
      const t = (((a << 5) | (a >>> 27)) + f + e + k + W[i]!) | 0
      e = d
      d = c
      c = (b << 30) | (b >>> 2)
      b = a
      a = t
    }
    h0 = (h0 + a) | 0
    h1 = (h1 + b) | 0
    h2 = (h2 + c) | 0
    h3 = (h3 + d) | 0
    h4 = (h4 + e) | 0
  }
  H[0] = h0
  H[1] = h1
  H[2] = h2
  H[3] = h3
  H[4] = h4
  return H
}

/** The 20-byte SHA-1 digest of `data`. */
export function sha1(data: Uint8Array): Uint8Array {
  const h = sha1Words(data)
  const out = new Uint8Array(20)
  const view = new DataView(out.buffer)
  for (let i = 0; i < 5; i++) view.setInt32(i << 2, h[i]!)
  return out
}
