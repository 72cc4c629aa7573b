import Foundation

// Arithmetic that must agree with numpy bit for bit where the spec is ill-conditioned (e.g. the
// spectral entropy of a filter's rounding residue): sums use numpy's pairwise summation.

/// numpy's pairwise sum (`DOUBLE_pairwise_sum`): 8 accumulators in blocks of at most 128 values,
/// halves (rounded to a multiple of 8) above that; a plain loop below 8 values.
@inline(__always)
func pairwiseSum(_ a: UnsafeBufferPointer<Double>) -> Double {
    let n = a.count
    if n < 8 {
        var res = 0.0
        for v in a { res += v }
        return res
    }
    if n <= 128 {
        var r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5], r6 = a[6], r7 = a[7]
        var i = 8
        let end = n - n % 8
        while i < end {
            r0 += a[i]; r1 += a[i + 1]; r2 += a[i + 2]; r3 += a[i + 3]
            r4 += a[i + 4]; r5 += a[i + 5]; r6 += a[i + 6]; r7 += a[i + 7]
            i += 8
        }
        var res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n { res += a[i]; i += 1 }
        return res
    }
    var n2 = n / 2
    n2 -= n2 % 8
    return pairwiseSum(UnsafeBufferPointer(rebasing: a[0..<n2])) + pairwiseSum(UnsafeBufferPointer(rebasing: a[n2..<n]))
}

@inline(__always)
func pairwiseSum(_ a: [Double]) -> Double { a.withUnsafeBufferPointer { pairwiseSum($0) } }

@inline(__always)
func pairwiseSum(_ a: ArraySlice<Double>) -> Double { a.withUnsafeBufferPointer { pairwiseSum($0) } }

/// numpy's mean: the pairwise sum divided by n.
@inline(__always)
func mean(_ a: [Double]) -> Double { pairwiseSum(a) / Double(a.count) }

/// x - mean(x), as numpy's `x - x.mean(axis=-1, keepdims=True)`.
@inline(__always)
func centered(_ x: [Double]) -> [Double] {
    let m = mean(x)
    return x.map { $0 - m }
}

/// numpy's `quantile(v, q)` with the default (linear) method, on values already sorted ascending:
/// virtual index n*q + (1 - q) - 1, then numpy's `_lerp` (from the upper neighbour when gamma >= 0.5).
func sortedQuantile(_ s: [Double], _ q: Double) -> Double {
    let n = s.count
    let virtualIndex = Double(n) * q + (1.0 + q * (1.0 - 1.0 - 1.0)) - 1.0
    let lower = virtualIndex.rounded(.down)
    var previous = Int(lower), next = previous + 1
    if virtualIndex >= Double(n - 1) { previous = n - 1; next = n - 1 }
    if virtualIndex < 0 { previous = 0; next = 0 }
    let gamma = virtualIndex - Double(previous)
    let a = s[previous], b = s[next]
    let diff = b - a
    return gamma >= 0.5 ? b - diff * (1.0 - gamma) : a + diff * gamma
}

/// The one-sided DFT power of a real series: P[k] = (Re X[k]^2 + Im X[k]^2) / n^2 for k = 0..n/2, X the
/// plain (unscaled) DFT. Radix-2 FFT when n is a power of two, a direct DFT over an exact twiddle table
/// otherwise (n is a window: tens to hundreds of samples).
final class PowerSpectrum {
    let n: Int
    private let cosTable: [Double]
    private let sinTable: [Double]
    private let bitReversed: [Int]
    private let radix2: Bool

    init(n: Int) {
        self.n = n
        radix2 = n >= 2 && n & (n - 1) == 0
        // cos/sin(2*pi*j/n) for j = 0..n-1: a direct DFT reads index (k*t) mod n
        cosTable = (0..<n).map { cos(2.0 * Double.pi * Double($0) / Double(n)) }
        sinTable = (0..<n).map { sin(2.0 * Double.pi * Double($0) / Double(n)) }
        var rev = [Int](repeating: 0, count: n)
        if radix2 {
            let bits = n.trailingZeroBitCount
            for i in 0..<n {
                var r = 0, v = i
                for _ in 0..<bits { r = (r << 1) | (v & 1); v >>= 1 }
                rev[i] = r
            }
        }
        bitReversed = rev
    }

    /// P[0...n/2] of `d` (d.count == n).
    func power(_ d: [Double]) -> [Double] {
        let half = n / 2
        let scale = Double(n * n)
        var P = [Double](repeating: 0, count: half + 1)
        if radix2 {
            var re = [Double](repeating: 0, count: n), im = [Double](repeating: 0, count: n)
            for i in 0..<n { re[bitReversed[i]] = d[i] }
            var size = 2
            while size <= n {
                let halfSize = size / 2, stride = n / size
                var start = 0
                while start < n {
                    for j in 0..<halfSize {
                        // twiddle exp(-2*pi*i*j/size) = cos - i*sin at table index j*stride
                        let wr = cosTable[j * stride], wi = -sinTable[j * stride]
                        let a = start + j, b = a + halfSize
                        let tr = re[b] * wr - im[b] * wi
                        let ti = re[b] * wi + im[b] * wr
                        re[b] = re[a] - tr; im[b] = im[a] - ti
                        re[a] += tr; im[a] += ti
                    }
                    start += size
                }
                size *= 2
            }
            for k in 0...half { P[k] = (re[k] * re[k] + im[k] * im[k]) / scale }
        } else {
            for k in 0...half {
                var sr = 0.0, si = 0.0, j = 0
                for t in 0..<n {
                    sr += d[t] * cosTable[j]
                    si -= d[t] * sinTable[j]
                    j += k
                    if j >= n { j -= n }
                }
                P[k] = (sr * sr + si * si) / scale
            }
        }
        return P
    }
}
