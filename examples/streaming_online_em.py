"""Online (stochastic) EM on a stream, and out-of-core EM on a file larger than you want in memory.

Run: python examples/streaming_online_em.py [output-directory]
"""

import os
import sys

import numpy as np

import emkit

out = sys.argv[1] if len(sys.argv) > 1 else "emkit-examples"
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
centres = rng.normal(scale=4, size=(4, 3))


def batch(n):
    """A mini-batch from the stream."""
    return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, 3))


# 1. A stream: partial_fit on each mini-batch, forever if need be
online = emkit.GaussianMixture(4, random_state=0)
for i in range(50):
    online.partial_fit(batch(1000), schedule={"kappa": 0.6, "tau": 2.0})
print("online EM after 50 batches: mean log-likelihood on the last batch %.4f" % online.lower_bound_)

# 2. A file on disk, read chunk by chunk on every EM iteration (never loaded whole)
path = os.path.join(out, "stream.npy")
np.save(path, batch(200_000).astype(np.float32))
big = emkit.GaussianMixture(4, random_state=0).fit(np.load(path, mmap_mode="r"))
print("out-of-core EM on %s: converged=%s after %d iterations, mean log-likelihood %.4f"
      % (path, big.converged_, big.n_iter_, big.lower_bound_))

# 3. Stochastic EM over the same data: a few passes of shuffled mini-batches
fast = emkit.GaussianMixture(4, random_state=0, max_iter=3).fit(np.load(path, mmap_mode="r"),
                                                                algorithm="stochastic", batch_size=2000)
print("stochastic EM, 3 passes: mean log-likelihood %.4f" % fast.score(np.load(path, mmap_mode="r")[:50_000]))
