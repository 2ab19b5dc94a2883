"""Fit a Gaussian mixture to the Old Faithful eruptions, choose K by BIC, save and reload it.

Run: python examples/quickstart_mixture.py [output-directory]
"""

import os
import sys

import emkit
from emkit.datasets import load_faithful
from emkit.plot import plot_model, save_figure

out = sys.argv[1] if len(sys.argv) > 1 else "emkit-examples"
os.makedirs(out, exist_ok=True)

X = load_faithful().data  # (272, 2): eruption duration, waiting time (minutes)

# Model selection in one call: a ranked table and the best fitted model
result = emkit.select(emkit.GaussianMixture(covariance_type="full", random_state=0), X, n_components=range(1, 6),
                      criterion="bic")
print(result.table[["n_components", "bic", "mean_loglik", "rank"]].to_string(index=False))
gm = result.best_model
print("best K:", result.best_n_components, "weights:", gm.weights_.round(3))

# Restarts you can trust: how reproducible is each component across restarts?
gm5 = emkit.GaussianMixture(result.best_n_components, n_init=5, random_state=0).fit(X)
print(emkit.state_stability(gm5)[["state", "stability", "mean_distance"]].to_string(index=False))

# Safe model file: loading it cannot run code
path = gm.save(os.path.join(out, "faithful-gmm.npz"))
same = emkit.load(path)
assert (same.predict(X) == gm.predict(X)).all()

save_figure(plot_model(gm, X, feature_names=["eruptions", "waiting"]), os.path.join(out, "faithful-gmm.png"))
print("wrote", path, "and", os.path.join(out, "faithful-gmm.png"))
