/* rng (engine/rng.h): the published xoshiro256** and splitmix64 vectors,
 * fixed-seed values, exact uniform floats, rng_below without modulo bias,
 * shuffles that are uniform permutations, normal moments, split streams.
 * Every statistical check runs on a fixed seed, so it is deterministic; the
 * bounds sit at 5+ standard deviations of a correct generator.
 * Usage: test_rng CASE */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rng.h"

static int test_reference_vectors(void)
{
	/* xoshiro256** from state {1, 2, 3, 4} (Vigna's reference implementation) */
	struct rng r = {{1, 2, 3, 4}};
	const uint64_t xo[] = {11520ull, 0ull, 1509978240ull, 1215971899390074240ull};
	for (int i = 0; i < 4; i++) {
		uint64_t v = rng_next(&r);
		CHECK(v == xo[i], "xoshiro256** output %d = %llu, expected %llu", i,
		      (unsigned long long)v, (unsigned long long)xo[i]);
	}
	/* splitmix64's first output from 0 seeds the first state word */
	rng_seed(&r, 0);
	CHECK(r.s[0] == 0xe220a8397b1dcdafull, "splitmix64(0) = %llx",
	      (unsigned long long)r.s[0]);
	/* fixed-seed stream (pinned: a change here changes every job's shuffles) */
	const uint64_t s42[] = {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull,
				0xecb8ad4703b360a1ull};
	rng_seed(&r, 42);
	for (int i = 0; i < 4; i++) {
		uint64_t v = rng_next(&r);
		CHECK(v == s42[i], "seed 42 output %d = %llx, expected %llx", i, (unsigned long long)v,
		      (unsigned long long)s42[i]);
	}
	rng_seed(&r, 42);
	/* rng_uniform keeps the top 24 bits */
	CHECK(rng_uniform(&r) == (float)(0x15780b2e0c2ec716ull >> 40) * 0x1.0p-24f,
	      "first uniform of seed 42");
	struct rng a, b;
	rng_seed(&a, 7);
	rng_seed(&b, 7);
	for (int i = 0; i < 1000; i++)
		CHECK(rng_next(&a) == rng_next(&b), "same seed, different stream at %d", i);
	rng_seed(&b, 8);
	int same = 0;
	for (int i = 0; i < 1000; i++)
		same += rng_next(&a) == rng_next(&b);
	CHECK(same == 0, "seeds 7 and 8 agree %d times in 1000", same);
	return 0;
}

static int test_uniform_exact_floats_in_range(void)
{
	struct rng r;
	rng_seed(&r, 1);
	const int n = 1000000;
	double sum = 0, sumd = 0;
	float lo = 1, hi = 0;
	for (int i = 0; i < n; i++) {
		float u = rng_uniform(&r);
		CHECK(u >= 0 && u < 1, "uniform %g outside [0, 1)", (double)u);
		float scaled = u * 16777216.0f;
		CHECK(scaled == floorf(scaled), "uniform %a is not a multiple of 2^-24", (double)u);
		lo = fminf(lo, u);
		hi = fmaxf(hi, u);
		sum += u;
		double d = rng_uniform_double(&r);
		CHECK(d >= 0 && d < 1, "uniform_double %g outside [0, 1)", d);
		sumd += d;
	}
	/* mean of U(0,1): sd of the mean is 0.289/sqrt(n) = 2.9e-4 */
	CHECK(fabs(sum / n - 0.5) < 1.5e-3 && fabs(sumd / n - 0.5) < 1.5e-3, "means %g %g", sum / n,
	      sumd / n);
	CHECK(lo < 1e-5 && hi > 1 - 1e-5, "range [%g, %g] not covered", (double)lo, (double)hi);
	return 0;
}

static int test_below_unbiased_small_n(void)
{
	struct rng r;
	rng_seed(&r, 2);
	/* n = 7: chi-square over 700,000 draws, 6 degrees of freedom */
	enum { K = 7 };
	const int draws = 700000;
	long count[K] = {0};
	for (int i = 0; i < draws; i++) {
		uint64_t v = rng_below(&r, K);
		CHECK(v < K, "rng_below(7) = %llu", (unsigned long long)v);
		count[v]++;
	}
	double chi2 = 0, expect = (double)draws / K;
	for (int i = 0; i < K; i++)
		chi2 += (count[i] - expect) * (count[i] - expect) / expect;
	CHECK(chi2 < 30, "chi-square %g over 7 bins (6 dof; 30 is p < 1e-4)", chi2);
	for (int i = 0; i < 100; i++)
		CHECK(rng_below(&r, 1) == 0, "rng_below(1) != 0");
	/* n = 3 * 2^62: a modulo reduction of 64 random bits would put half of
	 * the draws below 2^62 instead of a third; Lemire's rejection does not. */
	const uint64_t big = 3ull << 62;
	const int bd = 200000;
	int below = 0;
	for (int i = 0; i < bd; i++) {
		uint64_t v = rng_below(&r, big);
		CHECK(v < big, "rng_below(3*2^62) = %llu", (unsigned long long)v);
		below += v < (1ull << 62);
	}
	/* sd of the fraction: sqrt(2/9/bd) = 1.05e-3 */
	CHECK(fabs((double)below / bd - 1.0 / 3) < 6e-3, "fraction below 2^62: %g (unbiased 1/3)",
	      (double)below / bd);
	return 0;
}

static int perm_index4(const uint32_t *p)
{
	/* Lehmer code of a permutation of 4 */
	int idx = 0;
	for (int i = 0; i < 4; i++) {
		int smaller = 0;
		for (int j = i + 1; j < 4; j++)
			smaller += p[j] < p[i];
		idx = idx * (4 - i) + smaller;
	}
	return idx;
}

static int test_shuffle_permutation_uniform(void)
{
	struct rng r;
	rng_seed(&r, 3);
	enum { N = 1000 };
	uint32_t idx[N];
	unsigned char seen[N];
	for (int round = 0; round < 20; round++) {
		for (uint32_t i = 0; i < N; i++)
			idx[i] = i;
		rng_shuffle(&r, idx, N);
		memset(seen, 0, sizeof seen);
		int fixed = 0;
		for (uint32_t i = 0; i < N; i++) {
			CHECK(idx[i] < N && !seen[idx[i]], "not a permutation at %u", i);
			seen[idx[i]] = 1;
			fixed += idx[i] == i;
		}
		CHECK(fixed < 10, "%d fixed points in a shuffle of 1000 (expected ~1)", fixed);
	}
	/* all 24 orders of 4 items equally likely: chi-square, 23 dof */
	enum { P = 24 };
	const int shuffles = 240000;
	long count[P] = {0};
	for (int s = 0; s < shuffles; s++) {
		uint32_t p[4] = {0, 1, 2, 3};
		rng_shuffle(&r, p, 4);
		count[perm_index4(p)]++;
	}
	double chi2 = 0, expect = (double)shuffles / P;
	for (int i = 0; i < P; i++) {
		CHECK(count[i] > 0, "order %d never drawn", i);
		chi2 += (count[i] - expect) * (count[i] - expect) / expect;
	}
	CHECK(chi2 < 60, "chi-square %g over the 24 orders (23 dof; 60 is p < 1e-4)", chi2);
	uint32_t one = 5;
	rng_shuffle(&r, &one, 1);
	rng_shuffle(&r, NULL, 0);
	CHECK(one == 5, "shuffle of one item changed it");
	return 0;
}

static int test_normal_moments(void)
{
	struct rng r;
	rng_seed(&r, 4);
	const int n = 400000;
	double s1 = 0, s2 = 0, s4 = 0;
	int beyond3 = 0;
	for (int i = 0; i < n; i++) {
		double v = rng_normal(&r);
		CHECK(isfinite(v), "normal draw %d not finite", i);
		s1 += v;
		s2 += v * v;
		s4 += v * v * v * v;
		beyond3 += fabs(v) > 3;
	}
	double mean = s1 / n, var = s2 / n - mean * mean, kurt = s4 / n / (var * var);
	/* sd of the mean 1.6e-3, of the variance 2.2e-3, of the kurtosis ~8e-3 */
	CHECK(fabs(mean) < 0.01 && fabs(var - 1) < 0.015 && fabs(kurt - 3) < 0.06,
	      "mean %g variance %g kurtosis %g", mean, var, kurt);
	/* P(|z| > 3) = 0.0027 */
	CHECK(fabs((double)beyond3 / n - 0.0027) < 0.0006, "tail fraction %g", (double)beyond3 / n);
	return 0;
}

static int test_split_independent_streams(void)
{
	struct rng a, b;
	rng_seed(&a, 9);
	rng_seed(&b, 9);
	struct rng ca = rng_split(&a), cb = rng_split(&b);
	/* deterministic given the parent */
	for (int i = 0; i < 100; i++)
		CHECK(rng_next(&ca) == rng_next(&cb), "split streams of equal parents differ");
	/* the parent advanced once, and the child is not the parent's continuation */
	struct rng p;
	rng_seed(&p, 9);
	rng_next(&p);
	CHECK(!memcmp(&p, &a, sizeof p), "split did not advance the parent exactly once");
	int same = 0;
	for (int i = 0; i < 1000; i++)
		same += rng_next(&a) == rng_next(&ca);
	CHECK(same == 0, "child and parent agree %d times in 1000", same);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_rng CASE\n");
		return 2;
	}
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"reference_vectors", test_reference_vectors},
		{"uniform_exact_floats_in_range", test_uniform_exact_floats_in_range},
		{"below_unbiased_small_n", test_below_unbiased_small_n},
		{"shuffle_permutation_uniform", test_shuffle_permutation_uniform},
		{"normal_moments", test_normal_moments},
		{"split_independent_streams", test_split_independent_streams},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
