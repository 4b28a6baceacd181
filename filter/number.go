package filter

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"sync"
)

// Number conversions exactly as libxml2 does them (xpath.c:
// xmlXPathStringEvalNumber, xmlXPathCompNumber, xmlXPathFormatNumber), not
// as strconv does: "+5", "0x10", "Inf", "NaN" and "1_0" are NaN to libxml2,
// "1e3", " 5 ", "5." and ".5" are numbers.

// maxFrac is libxml2's MAX_FRAC: fraction digits kept after leading zeros.
const maxFrac = 20

var (
	pow10Once sync.Once
	pow10Pos  [pow10Max + 1]float64 // 10^k, correctly rounded
	pow10Neg  [pow10Max + 1]float64 // 10^-k, correctly rounded
)

// Beyond ±pow10Max the results are Inf and 0 anyway.
const pow10Max = 400

// pow10 returns glibc's pow(10.0, k): 10^k rounded to nearest except for
// k = 23 and 210, the two exact ties in range, where glibc (2.28 and
// later) rounds up. math.Pow10 is no substitute: it multiplies two table
// entries and can be an ulp off.
func pow10(k int) float64 {
	pow10Once.Do(func() {
		for i := 0; i <= pow10Max; i++ {
			pow10Pos[i], _ = strconv.ParseFloat("1e"+strconv.Itoa(i), 64)
			pow10Neg[i], _ = strconv.ParseFloat("1e-"+strconv.Itoa(i), 64)
		}
		pow10Pos[23] = math.Float64frombits(0x44b52d02c7e14af7)
		pow10Pos[210] = math.Float64frombits(0x6b88557f31326bbc)
	})
	switch {
	case k > pow10Max:
		return math.Inf(1)
	case k < -pow10Max:
		return 0
	case k >= 0:
		return pow10Pos[k]
	default:
		return pow10Neg[-k]
	}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// stringToNumber is xmlXPathStringEvalNumber: the conversion behind
// number(), comparisons with numbers and arithmetic on strings.
func stringToNumber(s string) float64 {
	i, n := 0, len(s)
	for i < n && isBlank(s[i]) {
		i++
	}
	neg := false
	if i < n && s[i] == '-' {
		neg = true
		i++
	}
	if i >= n || s[i] != '.' && !isDigit(s[i]) {
		return math.NaN()
	}
	ret, i, ok := scanMantissa(s, i)
	if !ok {
		return math.NaN()
	}
	exp := 0
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		exp, i = scanExponent(s, i+1)
	}
	for i < n && isBlank(s[i]) {
		i++
	}
	if i != n {
		return math.NaN()
	}
	if neg {
		ret = -ret
	}
	return ret * pow10(exp)
}

// scanMantissa reads Digits ('.' Digits?)? | '.' Digits with libxml2's
// arithmetic (digit by digit, at most maxFrac significant fraction digits).
// ok is false for a lone ".".
func scanMantissa(s string, i int) (ret float64, next int, ok bool) {
	n := len(s)
	digits := false
	for i < n && isDigit(s[i]) {
		// The conversion stops Go from fusing this into an FMA, which C
		// (without -ffp-contract on x86-64) does not do either.
		ret = float64(ret*10) + float64(s[i]-'0')
		digits = true
		i++
	}
	if i < n && s[i] == '.' {
		i++
		if (i >= n || !isDigit(s[i])) && !digits {
			return 0, i, false
		}
		frac := 0
		for i < n && s[i] == '0' {
			frac++
			i++
		}
		limit := frac + maxFrac
		fraction := 0.0
		for i < n && isDigit(s[i]) && frac < limit {
			fraction = float64(fraction*10) + float64(s[i]-'0')
			frac++
			i++
		}
		ret += fraction / pow10(frac)
		for i < n && isDigit(s[i]) {
			i++
		}
	}
	return ret, i, true
}

// scanExponent reads [+-]?Digits* after an 'e' (no digits means 0, as in
// libxml2).
func scanExponent(s string, i int) (exp, next int) {
	n := len(s)
	neg := false
	if i < n && s[i] == '-' {
		neg = true
		i++
	} else if i < n && s[i] == '+' {
		i++
	}
	for i < n && isDigit(s[i]) {
		if exp < 1000000 {
			exp = exp*10 + int(s[i]-'0')
		}
		i++
	}
	if neg {
		exp = -exp
	}
	return exp, i
}

// literalNumber is xmlXPathCompNumber: a number token in an expression
// (s[i] is a digit, or '.' followed by a digit). It returns the value and
// the index after the token.
func literalNumber(s string, i int) (float64, int) {
	ret, i, _ := scanMantissa(s, i)
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		var exp int
		exp, i = scanExponent(s, i+1)
		ret *= pow10(exp)
	}
	return ret, i
}

// numberToString is xmlXPathCastNumberToString.
func numberToString(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case math.IsNaN(f):
		return "NaN"
	case f == 0:
		return "0"
	case f > math.MinInt32 && f < math.MaxInt32 && f == math.Trunc(f):
		return strconv.Itoa(int(f))
	}
	abs := math.Abs(f)
	if abs > 1e9 || abs < 1e-5 {
		// "%*.*e" with DBL_DIG-1 fraction digits, trailing zeros dropped.
		s := strconv.FormatFloat(f, 'e', 14, 64)
		e := strings.IndexByte(s, 'e')
		return trimFraction(s[:e]) + s[e:]
	}
	ip := log10Trunc(abs)
	fp := 15 - ip
	if ip > 0 {
		fp--
	}
	return trimFraction(strconv.FormatFloat(f, 'f', fp, 64))
}

// trimFraction drops trailing fraction zeros, and the point if nothing is
// left after it.
func trimFraction(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// log10Trunc is (int)log10(abs) with a correctly rounded log10, as glibc
// computes it; math.Log10 can be an ulp off near powers of ten, which would
// change the number of digits printed.
func log10Trunc(abs float64) int {
	l := math.Log10(abs)
	k := math.Round(l)
	if k == 0 || math.Abs(l-k) > 1e-9 {
		return int(l) // truncation toward zero, like the C cast
	}
	// abs is within 1e-9 (relative) of 10^k: decide exactly whether the
	// rounded log10 is the integer k itself.
	p := new(big.Float).SetPrec(256)
	if k > 0 {
		p.SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(k)), nil))
	} else {
		q := new(big.Float).SetPrec(256).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-k)), nil))
		p.Quo(new(big.Float).SetPrec(256).SetInt64(1), q)
	}
	r := new(big.Float).SetPrec(256).SetFloat64(abs)
	r.Sub(r, p).Quo(r, p) // abs/10^k - 1
	rel, _ := r.Float64()
	d := rel / math.Ln10 // log10(abs) - k to first order
	halfULP := (math.Nextafter(math.Abs(k), math.Inf(1)) - math.Abs(k)) / 2
	if math.Abs(d) < halfULP {
		return int(k)
	}
	if d > 0 {
		if k > 0 {
			return int(k)
		}
		return int(k) + 1
	}
	if k > 0 {
		return int(k) - 1
	}
	return int(k)
}
