"""Samplers for the AudioX family, k-diffusion style: small functions over callables.

Nothing here knows the networks.  The pieces:

* ``objectives``  -- v-objective (``VDenoiser``: velocity -> denoiser) and rectified-flow helpers.
* ``schedules``   -- official polyexponential (rho = 1) sigmas, Karras, rectified-flow t grids.
* ``kdiffusion``  -- every sampler of the official ``sample_k`` (DPM++ 3M SDE = official default,
  DPM++ 2M SDE, k-heun, k-lms, k-dpmpp-2s-ancestral, k-dpm-2) plus Euler and DPM++ 2M, over
  ``denoiser(x, sigma)``; ``K_SAMPLERS`` maps the official names to them.
* ``dpm_solver``  -- k-dpm-fast and k-dpm-adaptive (DPM-Solver, fixed / adaptive step size).
* ``noise``       -- noise samplers for the SDE samplers (Brownian tree = official; Gaussian).
* ``rf``          -- rectified-flow Euler (official) and Heun over ``velocity(x, t)``.
* ``turbo``       -- AudioX-Turbo's 4-step DMD sampler.
* ``guidance``    -- classifier-free guidance (batched or two-call, rescale phi, negative cond).
* ``inpaint``     -- masked sampling, time-range masks, audio-to-audio variation.
* ``procedures``  -- one-call v-objective / rectified-flow sampling.

Typical v-objective use (AudioX, AudioX-MAF, AudioX-MAF-MMDiT)::

    guided = ClassifierFreeGuidance(model_fn, cond, zeros_cond, scale=7.0)   # model_fn(x, t, cond)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn([B, 64, L], generator=g).to(device, dtype)
    latents = sample_v_objective(guided, noise, steps=250, generator=g, callback=cb)

Turbo::

    latents = sample_turbo(lambda x, t: model_fn(x, t, cond), noise, steps=4, generator=g)

Every sampler reports ``callback(step, total, info)`` once per step (raise ``Interrupted`` to
stop) and accepts an ``after_step(x, level, i)`` hook; batch sizes > 1 work everywhere.
"""
from .guidance import ClassifierFreeGuidance, ConditionedModelFn, batch_concat, cfg_combine
from .inpaint import (
    LatentInpainter,
    noised_known,
    noised_start,
    regenerate_mask,
    regenerate_mask_seconds,
    seconds_to_latent_frames,
    variation_start,
)
from .dpm_solver import (ADAPTIVE_OFFICIAL, DPM_SOLVER_K_SAMPLERS, PIDStepSizeController, dpm_fast_orders,
                         sample_dpm_adaptive, sample_dpm_fast)
from .kdiffusion import (
    ANCESTRAL_K_SAMPLERS,
    K_SAMPLERS,
    OFFICIAL_K_SAMPLERS,
    STOCHASTIC_K_SAMPLERS,
    ancestral_step,
    lms_coefficients,
    sample_dpm_2,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_2s_ancestral,
    sample_dpmpp_3m_sde,
    sample_euler,
    sample_heun,
    sample_lms,
)
from .noise import BrownianTreeNoiseSampler, GaussianNoiseSampler, NoiseSampler, draw_tree_seed, randn_from
from .objectives import (
    VDenoiser,
    rf_noised,
    rf_target,
    rf_x0,
    sigma_to_t,
    t_to_sigma,
    v_alpha_sigma,
    v_noised,
    v_scalings,
    v_target,
)
from .procedures import sample_rectified_flow, sample_v_objective
from .rf import RF_SAMPLERS, rf_euler, rf_heun
from .schedules import (
    DEFAULT_CFG_SCALE,
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    DEFAULT_STEPS,
    GRADIO_SIGMA_MIN,
    karras_sigmas,
    loglinear_sigmas,
    make_sigmas,
    polyexponential_sigmas,
    rf_timesteps,
)
from .turbo import (TURBO_DEFAULT_STEPS, TURBO_MAX_STEPS, sample_turbo, sample_turbo_static, turbo_noises,
                    turbo_timesteps)

__all__ = [
    "ClassifierFreeGuidance", "ConditionedModelFn", "batch_concat", "cfg_combine",
    "LatentInpainter", "noised_known", "noised_start", "regenerate_mask", "regenerate_mask_seconds",
    "seconds_to_latent_frames", "variation_start",
    "ADAPTIVE_OFFICIAL", "DPM_SOLVER_K_SAMPLERS", "PIDStepSizeController", "dpm_fast_orders",
    "sample_dpm_adaptive", "sample_dpm_fast",
    "ANCESTRAL_K_SAMPLERS", "K_SAMPLERS", "OFFICIAL_K_SAMPLERS", "STOCHASTIC_K_SAMPLERS", "ancestral_step",
    "lms_coefficients", "sample_dpm_2", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_3m_sde", "sample_euler", "sample_heun", "sample_lms",
    "BrownianTreeNoiseSampler", "GaussianNoiseSampler", "NoiseSampler", "draw_tree_seed", "randn_from",
    "VDenoiser", "rf_noised", "rf_target", "rf_x0", "sigma_to_t", "t_to_sigma", "v_alpha_sigma",
    "v_noised", "v_scalings", "v_target",
    "sample_rectified_flow", "sample_v_objective",
    "RF_SAMPLERS", "rf_euler", "rf_heun",
    "DEFAULT_CFG_SCALE", "DEFAULT_SIGMA_MAX", "DEFAULT_SIGMA_MIN", "DEFAULT_STEPS", "GRADIO_SIGMA_MIN",
    "karras_sigmas", "loglinear_sigmas", "make_sigmas", "polyexponential_sigmas", "rf_timesteps",
    "TURBO_DEFAULT_STEPS", "TURBO_MAX_STEPS", "sample_turbo", "sample_turbo_static", "turbo_noises", "turbo_timesteps",
]
