"""BDIA's and O-BELM's update rules as their authors' code writes them, on the raw latent z,
transcribed line by line for tests and ``bench/bijection_reference.py``. Nothing here comes
from ``dlmap.inversion.bijections``: each function restates one published recurrence in its
own variables, so that dlmap's x̄-form (A_k, C_k) can be checked against it.

Sources (files and lines of the public repositories, read in December 2026):

* O-BELM, zituitui/BELM ``samplers/BELM.py``: generation in ``intermediate_to_latent``
  (lines 135-140: the last interval steps to ᾱ = 1; 150-153: the given pair; 158-177: the
  two-step update) and inversion in ``latent_to_intermediate`` (lines 216-217 and 242-243:
  the first step is DDIM's from ᾱ = 1 with eps(z, t = 1); 244-255: the two-step update).
* BDIA, guoqiang-zhang-x/BDIA ``text-to-image/stablediffusionV2/ldm/models/diffusion/
  BDIAddim.py``, ``p_sample_bdiaddim`` lines 240-269 (generation; ldm's DDIM schedule ends
  at alphas_cumprod[0]); its inversion from zituitui/BELM ``samplers/BDIA.py``
  ``latent_to_intermediate`` lines 219-227. (That file's first inversion step, line 218,
  omits ``* noise_pred``; ``ddim_from_clean`` below is the DDIM step the line intends, as
  BELM.py line 243 writes it.)

States are indexed as in dlmap, from the noisiest: ``alpha_bar[k]`` is ᾱ of state k and
``timesteps[k]`` its network timestep; ``eps(z, t)`` is the noise predictor.
"""

from __future__ import annotations


def reference_alphas(steps: int, steps_offset: int, ends: str):
    """(ᾱ of each state, timesteps) as the official codes form them, from diffusers'
    alphas_cumprod and nothing of dlmap's: ``alpha-one`` appends ᾱ = 1 (BELM.py 138-140);
    otherwise ldm's last ᾱ, alphas_cumprod[0], unless the timesteps already end at t = 0."""
    from diffusers import DDIMScheduler

    from dlmap.inversion.config import SD2_SCHEDULER

    scheduler = DDIMScheduler(**{**SD2_SCHEDULER, "steps_offset": steps_offset})
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    cumprod = scheduler.alphas_cumprod.double()
    alpha_bar = [float(cumprod[t]) for t in timesteps]
    if ends == "alpha-one":
        alpha_bar.append(1.0)
    elif timesteps[-1] != 0:
        alpha_bar.append(float(cumprod[0]))
    return alpha_bar, timesteps


def _a_s(alpha_bar):
    """(sqrt(ᾱ), sqrt(1 - ᾱ)): the code's alpha and sigma."""
    return alpha_bar**0.5, (1 - alpha_bar) ** 0.5


def belm_step(eps, x_prev, x_cur, alpha_p, alpha_t, alpha_s, t):
    """BELM.py 158-177: x_s from x_p (noisier) and x_t, with eps(x_t, t)."""
    alpha_p, sigma_p = _a_s(alpha_p)
    alpha_t, sigma_t = _a_s(alpha_t)
    alpha_s, sigma_s = _a_s(alpha_s)
    t_p, t_t, t_s = sigma_p / alpha_p, sigma_t / alpha_t, sigma_s / alpha_s
    delta_1, delta_2, delta_3 = t_t - t_p, t_s - t_t, t_s - t_p
    coef_1 = delta_2 * delta_3 * alpha_s / delta_1
    coef_2 = (delta_2 / delta_1) ** 2 * (alpha_s / alpha_p)
    coef_3 = (delta_1 - delta_2) * delta_3 / (delta_1**2) * (alpha_s / alpha_t)
    return coef_1 * eps(x_cur, t) + coef_2 * x_prev + coef_3 * x_cur


def belm_inverse_step(eps, x_cleaner, x_middle, alpha_i, alpha_i1, alpha_i2, t):
    """BELM.py 244-255: the noisier state (ᾱ = alpha_i) from the middle one (alpha_i1,
    evaluated at t) and the cleaner one (alpha_i2)."""
    alpha_i, sigma_i = _a_s(alpha_i)
    alpha_i1, sigma_i1 = _a_s(alpha_i1)
    alpha_i2, sigma_i2 = _a_s(alpha_i2)
    h_i = sigma_i / alpha_i - sigma_i1 / alpha_i1
    h_i1 = sigma_i1 / alpha_i1 - sigma_i2 / alpha_i2
    coef_x_i2 = (alpha_i / alpha_i2) * (h_i**2) / (h_i1**2)
    coef_x_i1 = (alpha_i / alpha_i1) * (h_i1**2 - h_i**2) / (h_i1**2)
    coef_eps = alpha_i * (h_i1 + h_i) * h_i / h_i1
    return coef_x_i2 * x_cleaner + coef_x_i1 * x_middle + coef_eps * eps(x_middle, t)


def bdia_step(eps, x_last, x, a_last, a_t, a_prev, t, gamma):
    """BDIAddim.py 240-269 (eta = 0): x_prev from x_last (noisier, ᾱ = a_last) and x (a_t),
    towards a_prev; pred_x0 and dir_xt as that code forms them."""
    e_t = eps(x, t)
    pred_x0 = (x - (1 - a_t) ** 0.5 * e_t) / a_t**0.5
    dir_xt = (1.0 - a_prev) ** 0.5 * e_t
    return (
        x_last
        - (1 - gamma) * (x_last - x)
        - gamma * (a_last**0.5 * pred_x0 + (1.0 - a_last) ** 0.5 * e_t - x)
        + a_prev**0.5 * pred_x0
        + dir_xt
        - x
    )


def bdia_inverse_step(eps, x_cleaner, x_middle, alpha_i, alpha_i1, alpha_i2, t, gamma):
    """BELM's BDIA.py 219-227: the noisier state from the middle one (evaluated at t) and the
    cleaner one."""
    alpha_i, sigma_i = _a_s(alpha_i)
    alpha_i1, sigma_i1 = _a_s(alpha_i1)
    alpha_i2, sigma_i2 = _a_s(alpha_i2)
    coef_x_i2 = 1 / gamma
    coef_x_i1 = alpha_i / alpha_i1 - (1 / gamma) * (alpha_i2 / alpha_i1)
    coef_eps = (sigma_i - (alpha_i / alpha_i1) * sigma_i1) - (1 / gamma) * (
        sigma_i2 - (alpha_i2 / alpha_i1) * sigma_i1
    )
    return coef_x_i2 * x_cleaner + coef_x_i1 * x_middle + coef_eps * eps(x_middle, t)


def ddim_from_clean(eps, clean, alpha_to, alpha_from, t):
    """BELM.py 242-243: the first inversion step, DDIM's from ᾱ = alpha_from to alpha_to with
    eps(clean, t) (the code passes t = 1 and alpha_from = 1)."""
    alpha_i, sigma_i = _a_s(alpha_to)
    alpha_i1, sigma_i1 = _a_s(alpha_from)
    return (alpha_i / alpha_i1) * clean + (sigma_i - (alpha_i / alpha_i1) * sigma_i1) * eps(
        clean, t
    )


def sample(name, eps, first, second, alpha_bar, timesteps, gamma=None):
    """The pair (state 0, state 1) -> the last state, as ``intermediate_to_latent`` with
    ``intermediate_second`` given (BELM.py 150-153) and the two-step update after it."""
    states = [first, second]
    for i in range(1, len(alpha_bar) - 1):
        a_p, a_t, a_s = alpha_bar[i - 1], alpha_bar[i], alpha_bar[i + 1]
        if name == "belm":
            nxt = belm_step(eps, states[-2], states[-1], a_p, a_t, a_s, timesteps[i])
        else:
            nxt = bdia_step(eps, states[-2], states[-1], a_p, a_t, a_s, timesteps[i], gamma)
        states.append(nxt)
    return states[-2], states[-1]


def invert(name, eps, clean, alpha_bar, timesteps, clean_timestep, gamma=None):
    """A clean latent (state T) -> the pair (state 0, state 1), as ``latent_to_intermediate``:
    one DDIM step from the clean end with eps(clean, clean_timestep), then the two-step
    update evaluated at the middle state."""
    last = len(alpha_bar) - 1
    first = ddim_from_clean(eps, clean, alpha_bar[last - 1], alpha_bar[last], clean_timestep)
    states = [clean, first]
    for k in range(last - 1, 0, -1):  # middle state k: makes state k - 1
        args = (alpha_bar[k - 1], alpha_bar[k], alpha_bar[k + 1], timesteps[k])
        if name == "belm":
            noisier = belm_inverse_step(eps, states[-2], states[-1], *args)
        else:
            noisier = bdia_inverse_step(eps, states[-2], states[-1], *args, gamma)
        states.append(noisier)
    return states[-1], states[-2]
