"""ComBat harmonization of site effects (Johnson 2007; Fortin 2017/2018) and ComBat-GAM (Pomponio 2020).

Arrays in, arrays out (subjects in rows, features — ROIs — in columns); :mod:`smriflow.stats.harmonize`
reads the tables. The model of feature ``v`` for subject ``j`` of site ``i`` is

    y_ijv = alpha_v + x_ij' beta_v + gamma_iv + delta_iv eps_ijv

with ``x`` the covariates whose effect is kept (age, sex, diagnosis …), ``gamma`` an additive and ``delta`` a
multiplicative site effect. Each step is the one of neuroHarmonize 2.5.2 (``harmonizationLearn``, which
calls neuroCombat 0.2.12), so that the harmonized values equal that package's (the tests compare them):

1. OLS of every feature on [site one-hot, covariates] (no intercept); ``grand_mean`` = the sites' fitted
   intercepts weighted by their share of subjects; ``var_pooled`` = mean squared residual (divided by n);
2. standardized data ``s = (y - grand_mean - x'beta) / sqrt(var_pooled)``;
3. ``gamma_hat`` = per-site mean of ``s``, ``delta_hat`` = per-site variance (ddof 1);
4. empirical Bayes (parametric priors: normal for gamma, inverse gamma for delta, estimated across
   features; iterated to a relative change of 1e-4) gives ``gamma_star``, ``delta_star`` — or, without
   EB, ``gamma_hat``, ``delta_hat``;
5. ``y* = (s - gamma_star) / sqrt(delta_star) * sqrt(var_pooled) + grand_mean + x'beta``.

ComBat-GAM replaces the linear term of the ``smooth`` covariates by a cubic B-spline basis (statsmodels
``BSplines``, 10 degrees of freedom) fitted by a penalized GAM (``GLMGam``) whose penalty weight is chosen
per feature by 5-fold cross-validation over ``logspace(0, 7, 11)``; the folds are drawn from one
``numpy.random.default_rng(seed)`` shared by the features in order, as neuroHarmonize does with ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ComBatFit", "MAX_EB_ITERATIONS", "combat", "site_variance_share"]

#: Empirical Bayes iterations before giving up (neuroCombat iterates without limit; it converges in tens).
MAX_EB_ITERATIONS = 10_000
_EB_TOLERANCE = 1e-4


@dataclass
class ComBatFit:
    """What :func:`combat` estimated.

    Attributes
    ----------
    harmonized : numpy.ndarray
        Subjects × features, the site effects removed and the covariate effects kept.
    sites : numpy.ndarray
        The site labels in sorted order (the rows of ``gamma_*``/``delta_*``).
    n_per_site : numpy.ndarray
    beta : numpy.ndarray
        Design columns × features: site intercepts, then covariates (then spline coefficients).
    var_pooled : numpy.ndarray
        Residual variance per feature.
    gamma_hat, delta_hat, gamma_star, delta_star : numpy.ndarray
        Sites × features: location and scale effects, before and after empirical Bayes.
    eb : bool
        Whether empirical Bayes was used (never for one feature, as in neuroHarmonize).
    penalty : numpy.ndarray or None
        ComBat-GAM: the cross-validated penalty weight per feature (× smooth term).
    design : numpy.ndarray or None
        The design matrix: site one-hot, covariates, then (ComBat-GAM) the B-spline basis.
    """

    harmonized: np.ndarray
    sites: np.ndarray
    n_per_site: np.ndarray
    beta: np.ndarray
    var_pooled: np.ndarray
    gamma_hat: np.ndarray
    delta_hat: np.ndarray
    gamma_star: np.ndarray
    delta_star: np.ndarray
    eb: bool
    penalty: np.ndarray | None = None
    design: np.ndarray | None = None


def _site_onehot(sites: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels, index = np.unique(sites, return_inverse=True)
    onehot = np.zeros((len(sites), len(labels)))
    onehot[np.arange(len(sites)), index] = 1.0
    return labels, index, onehot


def _gam_coefficients(
    values: np.ndarray, linear: np.ndarray, smooth: np.ndarray, seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Penalized B-spline GAM per feature; returns (design, coefficients, penalty weights)."""
    from statsmodels.gam.api import BSplines, GLMGam

    k = smooth.shape[1]
    if k == 1:
        splines = BSplines(smooth, df=10, degree=3, knot_kwds=[{"lower_bound": None, "upper_bound": None}])
    else:
        splines = BSplines(smooth, df=[10] * k, degree=[3] * k)
    rng = np.random.default_rng(seed)
    design = np.concatenate([linear, splines.basis], axis=1)
    beta = np.zeros((design.shape[1], values.shape[1]))
    penalty = np.zeros((values.shape[1], k))
    for v in range(values.shape[1]):
        gam = GLMGam(values[:, v], exog=linear, smoother=splines, alpha=np.ones(k))
        gam.alpha = gam.select_penweight_kfold(rng=rng)[0]
        beta[:, v] = gam.fit().params
        penalty[v] = gam.alpha
    return design, beta, penalty


def _eb_site(
    s: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray, g_bar: float, t2: float, a: float, b: float
) -> tuple[np.ndarray, np.ndarray]:
    """Parametric empirical Bayes of one site (neuroCombat's ``it_sol``): subjects × features ``s``."""
    n = s.shape[0]
    g_old, d_old = g_hat, d_hat
    for _ in range(MAX_EB_ITERATIONS):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = ((s - g_new) ** 2).sum(axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        # the relative change as sva and neuroCombat compute it (divided by the signed old value)
        change = max((np.abs(g_new - g_old) / g_old).max(), (np.abs(d_new - d_old) / d_old).max())
        g_old, d_old = g_new, d_new
        if not change > _EB_TOLERANCE:
            return g_new, d_new
    raise ValueError(f"ComBat: empirical Bayes did not converge in {MAX_EB_ITERATIONS} iterations")


def combat(
    values: np.ndarray,
    sites: np.ndarray,
    covariates: np.ndarray | None = None,
    *,
    smooth: np.ndarray | None = None,
    eb: bool = True,
    seed: int | None = 0,
) -> ComBatFit:
    """Remove additive and multiplicative site effects, keeping the covariates' effects.

    Parameters
    ----------
    values : array_like
        Subjects × features (e.g. ROI thickness), finite.
    sites : array_like
        One site label per subject; every site needs at least 2 subjects.
    covariates : array_like, optional
        Subjects × covariates whose (linear) effect is preserved, numerically coded, without an intercept
        (e.g. age, sex as 0/1, diagnosis dummies).
    smooth : array_like, optional
        Subjects × covariates whose effect is preserved as a smooth (nonlinear) function: ComBat-GAM.
    eb : bool
        Empirical Bayes shrinkage of the site effects (default; ignored for one feature).
    seed : int or None
        Seeds the cross-validation folds of ComBat-GAM (None: fresh entropy, not reproducible).

    Returns
    -------
    ComBatFit

    Raises
    ------
    ValueError
        Shapes that disagree, non-finite values, fewer than 2 sites, a site with one subject, a constant
        feature, or covariates collinear with the sites.
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"ComBat: values must be subjects × features, got shape {y.shape}")
    n, p = y.shape
    sites = np.asarray(sites).astype(str)
    if sites.shape != (n,):
        raise ValueError(f"ComBat: {len(sites)} site labels for {n} subjects")
    extra = [np.empty((n, 0))]
    for name, block in (("covariates", covariates), ("smooth", smooth)):
        if block is None:
            extra.append(np.empty((n, 0)))
            continue
        block = np.asarray(block, dtype=float).reshape(n, -1)
        if not np.isfinite(block).all():
            raise ValueError(f"ComBat: the {name} hold missing or infinite values")
        extra.append(block)
    cov, spl = extra[1], extra[2]
    if not np.isfinite(y).all():
        raise ValueError("ComBat: the values hold missing or infinite values")
    labels, index, onehot = _site_onehot(sites)
    counts = onehot.sum(axis=0).astype(int)
    if len(labels) < 2:
        raise ValueError(f"ComBat: one site only ({labels[0]}); nothing to harmonize")
    if counts.min() < 2:
        raise ValueError(
            f"ComBat: site '{labels[counts.argmin()]}' has 1 subject; every site needs at least 2"
        )
    linear = np.concatenate([onehot, cov], axis=1)
    full = np.concatenate([linear, spl], axis=1)
    if np.linalg.matrix_rank(full) < full.shape[1]:
        raise ValueError(
            "ComBat: the covariates are collinear with the sites (e.g. a group at one site only)"
        )
    eb = eb and p > 1
    n_sites = len(labels)

    penalty = None
    if spl.shape[1]:
        design, beta, penalty = _gam_coefficients(y, linear, spl, seed)
    else:
        design = linear
        beta = np.linalg.lstsq(design, y, rcond=None)[0]
    grand_mean = (counts / n) @ beta[:n_sites]
    mod_mean = design[:, n_sites:] @ beta[n_sites:]
    var_pooled = ((y - design @ beta) ** 2).mean(axis=0)
    if (var_pooled <= 0).any():
        raise ValueError(f"ComBat: feature {int(np.argmax(var_pooled <= 0))} has no residual variance")
    s = (y - grand_mean - mod_mean) / np.sqrt(var_pooled)

    gamma_hat = np.stack([s[index == i].mean(axis=0) for i in range(n_sites)])
    delta_hat = np.stack([s[index == i].var(axis=0, ddof=1) for i in range(n_sites)])
    if eb:
        gamma_bar = gamma_hat.mean(axis=1)
        t2 = gamma_hat.var(axis=1, ddof=1)
        m = delta_hat.mean(axis=1)
        s2 = delta_hat.var(axis=1, ddof=1)
        a_prior = (2 * s2 + m**2) / s2
        b_prior = (m * s2 + m**3) / s2
        stars = [
            _eb_site(s[index == i], gamma_hat[i], delta_hat[i], gamma_bar[i], t2[i], a_prior[i], b_prior[i])
            for i in range(n_sites)
        ]
        gamma_star = np.stack([g for g, _ in stars])
        delta_star = np.stack([d for _, d in stars])
    else:
        gamma_star, delta_star = gamma_hat, delta_hat
    adjusted = (s - gamma_star[index]) / np.sqrt(delta_star[index])
    harmonized = adjusted * np.sqrt(var_pooled) + grand_mean + mod_mean
    return ComBatFit(
        harmonized=harmonized,
        sites=labels,
        n_per_site=counts,
        beta=beta,
        var_pooled=var_pooled,
        gamma_hat=gamma_hat,
        delta_hat=delta_hat,
        gamma_star=gamma_star,
        delta_star=delta_star,
        eb=eb,
        penalty=penalty,
        design=design,
    )


def _rss(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    return ((y - design @ beta) ** 2).sum(axis=0)


def site_variance_share(
    values: np.ndarray, sites: np.ndarray, covariates: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Share of each feature's variance explained by site.

    Returns
    -------
    total : numpy.ndarray
        R² of site alone (one-way ANOVA eta²: between-site sum of squares / total sum of squares).
    unique : numpy.ndarray
        The R² that site adds to the covariates: (RSS(intercept + covariates) − RSS(site + covariates)) /
        total sum of squares — what ComBat removes (site differences not explained by the covariates).
    """
    y = np.asarray(values, dtype=float)
    n = y.shape[0]
    _, _, onehot = _site_onehot(np.asarray(sites).astype(str))
    cov = np.empty((n, 0)) if covariates is None else np.asarray(covariates, dtype=float).reshape(n, -1)
    tss = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    total = 1 - _rss(onehot, y) / tss
    reduced = _rss(np.column_stack([np.ones(n), cov]), y)
    unique = (reduced - _rss(np.column_stack([onehot, cov]), y)) / tss
    return total, unique
