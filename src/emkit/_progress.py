"""Progress of EM fits as a tqdm bar (imported only when a bar is shown)."""

from __future__ import annotations

import sys


class ProgressBar:
    """Callback drawing one tqdm bar over the iterations of each restart, then passing ``info`` on.

    Parameters
    ----------
    total : int
        Iterations per restart (``max_iter``).
    enabled : bool or None
        ``True`` always shows the bar, ``False`` never; ``None`` shows it only when standard error is a
        terminal.  The bar appears once a fit has run for a second.
    callback : callable, optional
        The user's callback, called after the bar is updated.
    delay : float, default=1.0
        Seconds before the bar appears.
    mininterval : float, default=0.1
        Least seconds between redraws.
    """

    def __init__(self, total, enabled=None, callback=None, delay=1.0, mininterval=0.1):
        if enabled is None:
            enabled = sys.stderr.isatty()
        if not isinstance(enabled, bool):
            raise ValueError(f"progress must be True, False or None; got {enabled!r}")
        self.total, self.enabled, self.callback = int(total), enabled, callback
        self._bar = None
        self._init = None
        self.delay, self.mininterval = delay, mininterval

    def __call__(self, info):
        if self.enabled:
            if self._bar is None or info["init"] != self._init:
                self._close_bar()
                from tqdm.auto import tqdm

                self._init = info["init"]
                self._bar = tqdm(total=self.total, desc=f"restart {info['init'] + 1}", unit="it", delay=self.delay,
                                 mininterval=self.mininterval, leave=False, file=sys.stderr, dynamic_ncols=True)
            self._bar.set_postfix_str(f"log-lik/sample {info['lower_bound']:.5g}", refresh=False)
            self._bar.update(max(0, min(info["iteration"], self.total) - self._bar.n))
        if self.callback is not None:
            self.callback(info)

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self):
        """Remove the bar from the screen."""
        self._close_bar()
