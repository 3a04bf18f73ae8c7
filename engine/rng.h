/* rng: the seeded pseudo-random stream of training (shuffling, Dropout masks,
 * weight initialisation), so a job with a given "seed" repeats bit for bit.
 *
 * xoshiro256** (Blackman & Vigna), state seeded from one 64-bit seed through
 * splitmix64 as its authors recommend. Header-only; a struct rng is a plain
 * value owned by one thread: give each thread its own stream (rng_split). */
#ifndef NNCD_RNG_H
#define NNCD_RNG_H

#include <stddef.h>
#include <stdint.h>

struct rng {
	uint64_t s[4];
};

static inline uint64_t rng_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = rng_splitmix64(&seed);
}

static inline uint64_t rng_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rng_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rng_rotl(s[3], 45);
	return result;
}

/* Uniform in [0, 1) with 24 random bits: every value is an exact float. */
static inline float rng_uniform(struct rng *r)
{
	return (float)(rng_next(r) >> 40) * 0x1.0p-24f;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_uniform_double(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n >= 1, without modulo bias (Lemire's method). */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
	__uint128_t m = (__uint128_t)rng_next(r) * n;
	uint64_t low = (uint64_t)m;
	if (low < n) {
		uint64_t threshold = -n % n;
		while (low < threshold) {
			m = (__uint128_t)rng_next(r) * n;
			low = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

/* Standard normal by Box-Muller (one of the pair; simple and reproducible). */
static inline double rng_normal(struct rng *r)
{
	double u1 = 1.0 - rng_uniform_double(r); /* (0, 1]: log never sees 0 */
	double u2 = rng_uniform_double(r);
	/* sqrt(-2 ln u1) cos(2 pi u2) */
	return __builtin_sqrt(-2.0 * __builtin_log(u1)) * __builtin_cos(6.283185307179586 * u2);
}

/* Fisher-Yates shuffle of idx[0..n). */
static inline void rng_shuffle(struct rng *r, uint32_t *idx, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)rng_below(r, i);
		uint32_t t = idx[i - 1];
		idx[i - 1] = idx[j];
		idx[j] = t;
	}
}

/* An independent stream derived from r (for a worker thread or a sub-task),
 * advancing r once. */
static inline struct rng rng_split(struct rng *r)
{
	struct rng child;
	rng_seed(&child, rng_next(r));
	return child;
}

#endif
