# The per-element rules: all the math of fastoptim's kernels (see docs/rules.rst), in
# the same order of operations as the NumPy reference functions of the same names in
# fastoptim/reference.py, so that results are bit-identical.
#
# One function per rule of the rule table (fastoptim/rules.py), named _rule_<name>,
# with the signature the generated dispatch (_dispatch.pxi.tp) calls:
#
#     _rule_<name>(floating* p, floating g, floating* <state>..., floating <scalar>...)
#
# one pointer per state buffer and one value per kernel scalar, in the table's order.
# Each updates one element of the parameter and its state; the gradient is a value, so
# the user's gradient array is never written.

cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _decayed(floating g, floating p, floating wd) noexcept nogil:
    # Coupled L2 weight decay, g + wd*p, in a register; the user's gradient is not touched.
    if wd != 0:
        return g + wd * p
    return g


cdef inline void _rule_sgd(floating* p, floating g, floating lr, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    g = _decayed(g, pi, wd)
    p[0] = pi - lr * g


cdef inline void _rule_momentum(floating* p, floating g, floating* v,
                                floating lr, floating mu, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating vi
    g = _decayed(g, pi, wd)
    vi = mu * v[0] + lr * g
    v[0] = vi
    p[0] = pi - vi


cdef inline void _rule_nesterov(floating* p, floating g, floating* v,
                                floating lr, floating mu, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating vi
    g = _decayed(g, pi, wd)
    vi = mu * v[0] + lr * g
    v[0] = vi
    p[0] = pi - (mu * vi + lr * g)


cdef inline void _rule_adagrad(floating* p, floating g, floating* s,
                               floating lr, floating eps, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating si
    g = _decayed(g, pi, wd)
    si = s[0] + g * g
    s[0] = si
    p[0] = pi - lr * (g / (_sqrt(si) + eps))


cdef inline void _rule_rmsprop(floating* p, floating g, floating* e,
                               floating lr, floating alpha, floating one_minus_alpha,
                               floating eps, floating wd) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating ei
    g = _decayed(g, pi, wd)
    ei = alpha * e[0] + one_minus_alpha * (g * g)
    e[0] = ei
    p[0] = pi - lr * (g / (_sqrt(ei) + eps))


cdef inline void _rule_adadelta(floating* p, floating g, floating* sq, floating* acc,
                                floating lr, floating rho, floating one_minus_rho,
                                floating eps, floating wd) noexcept nogil:
    # sqrt(S+eps)/sqrt(G+eps) computed as sqrt((S+eps)/(G+eps)): equal in exact
    # arithmetic, one square root fewer per element.
    cdef floating pi = p[0]
    cdef floating ai = acc[0]
    cdef floating gi, delta
    g = _decayed(g, pi, wd)
    gi = rho * sq[0] + one_minus_rho * (g * g)
    delta = _sqrt((ai + eps) / (gi + eps)) * g
    sq[0] = gi
    acc[0] = rho * ai + one_minus_rho * (delta * delta)
    p[0] = pi - lr * delta


cdef inline void _adam_core(floating* p, floating g, floating* m, floating* v,
                            floating decay_factor, floating beta1, floating one_minus_beta1,
                            floating beta2, floating one_minus_beta2, floating eps_hat,
                            floating wd, floating step_size) noexcept nogil:
    # The Adam paper's efficient form (Kingma & Ba, sec. 2): with
    # step_size = lr*sqrt(1-b2^t)/(1-b1^t) and eps_hat = eps*sqrt(1-b2^t),
    # lr*m_hat/(sqrt(v_hat)+eps) == step_size*m/(sqrt(v)+eps_hat) exactly in real
    # arithmetic; per element one square root and one division.
    # decay_factor is 1 - lr*wd for AdamW (decoupled decay) and exactly 1 for Adam, where
    # p * 1 == p bit for bit (NaN and -0.0 included); wd is coupled decay (Adam only).
    cdef floating pi = p[0] * decay_factor
    cdef floating mi, vi
    g = _decayed(g, pi, wd)
    mi = beta1 * m[0] + one_minus_beta1 * g
    vi = beta2 * v[0] + one_minus_beta2 * (g * g)
    m[0] = mi
    v[0] = vi
    p[0] = pi - step_size * (mi / (_sqrt(vi) + eps_hat))


cdef inline void _rule_adam(floating* p, floating g, floating* m, floating* v,
                            floating beta1, floating one_minus_beta1, floating beta2,
                            floating one_minus_beta2, floating eps_hat, floating wd,
                            floating step_size) noexcept nogil:
    # Adam: no decoupled decay (a factor of exactly 1), coupled decay wd
    _adam_core(p, g, m, v, <floating>1.0, beta1, one_minus_beta1, beta2, one_minus_beta2,
               eps_hat, wd, step_size)


cdef inline void _rule_adamw(floating* p, floating g, floating* m, floating* v,
                             floating decay_factor, floating beta1, floating one_minus_beta1,
                             floating beta2, floating one_minus_beta2, floating eps_hat,
                             floating step_size) noexcept nogil:
    # AdamW: decoupled decay p*(1 - lr*wd), no coupled decay term
    _adam_core(p, g, m, v, decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2,
               eps_hat, <floating>0.0, step_size)


cdef inline floating _abs(floating x) noexcept nogil:
    # |x| with the sign bit cleared (NaN included), as np.abs
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating _sign(floating x) noexcept nogil:
    # 1 if x > 0, -1 if x < 0, else x itself (a zero keeps its sign, NaN stays): the
    # reference's _sign
    if x > 0:
        return <floating>1.0
    if x < 0:
        return <floating>-1.0
    return x


cdef inline floating _max(floating a, floating b) noexcept nogil:
    # a if a >= b or a is NaN, else b: NaN from either side propagates (np.maximum's
    # rule), and between -0.0 and 0.0 the first is kept: the reference's _maximum
    if a >= b or a != a:
        return a
    return b


# The variants of the structural options (rules.VARIANTS): AMSGrad for Adam and AdamW,
# centered RMSprop and RMSprop with momentum.

cdef inline void _amsgrad_core(floating* p, floating g, floating* m, floating* v,
                               floating* w, floating decay_factor, floating beta1,
                               floating one_minus_beta1, floating beta2,
                               floating one_minus_beta2, floating eps_hat, floating wd,
                               floating step_size) noexcept nogil:
    # _adam_core with the running maximum w of v in the root (torch.optim's
    # max(max_exp_avg_sq, exp_avg_sq), NaN propagating)
    cdef floating pi = p[0] * decay_factor
    cdef floating mi, vi, wi
    g = _decayed(g, pi, wd)
    mi = beta1 * m[0] + one_minus_beta1 * g
    vi = beta2 * v[0] + one_minus_beta2 * (g * g)
    wi = _max(w[0], vi)
    m[0] = mi
    v[0] = vi
    w[0] = wi
    p[0] = pi - step_size * (mi / (_sqrt(wi) + eps_hat))


cdef inline void _rule_adam_amsgrad(floating* p, floating g, floating* m, floating* v,
                                    floating* w, floating beta1, floating one_minus_beta1,
                                    floating beta2, floating one_minus_beta2,
                                    floating eps_hat, floating wd,
                                    floating step_size) noexcept nogil:
    _amsgrad_core(p, g, m, v, w, <floating>1.0, beta1, one_minus_beta1, beta2,
                  one_minus_beta2, eps_hat, wd, step_size)


cdef inline void _rule_adamw_amsgrad(floating* p, floating g, floating* m, floating* v,
                                     floating* w, floating decay_factor, floating beta1,
                                     floating one_minus_beta1, floating beta2,
                                     floating one_minus_beta2, floating eps_hat,
                                     floating step_size) noexcept nogil:
    _amsgrad_core(p, g, m, v, w, decay_factor, beta1, one_minus_beta1, beta2,
                  one_minus_beta2, eps_hat, <floating>0.0, step_size)


cdef inline void _rule_rmsprop_centered(floating* p, floating g, floating* e, floating* a,
                                        floating lr, floating alpha,
                                        floating one_minus_alpha, floating eps,
                                        floating wd) noexcept nogil:
    # the root of the variance estimate E - a*a, a the running average of g
    cdef floating pi = p[0]
    cdef floating ei, ai
    g = _decayed(g, pi, wd)
    ei = alpha * e[0] + one_minus_alpha * (g * g)
    ai = alpha * a[0] + one_minus_alpha * g
    e[0] = ei
    a[0] = ai
    p[0] = pi - lr * (g / (_sqrt(ei - ai * ai) + eps))


cdef inline void _rule_rmsprop_momentum(floating* p, floating g, floating* e, floating* b,
                                        floating lr, floating alpha,
                                        floating one_minus_alpha, floating eps,
                                        floating wd, floating mu) noexcept nogil:
    # the step through a velocity of lr-scaled steps, b <- mu*b + lr*g/(sqrt(E) + eps)
    cdef floating pi = p[0]
    cdef floating ei, bi
    g = _decayed(g, pi, wd)
    ei = alpha * e[0] + one_minus_alpha * (g * g)
    bi = mu * b[0] + lr * (g / (_sqrt(ei) + eps))
    e[0] = ei
    b[0] = bi
    p[0] = pi - bi


cdef inline void _rule_rmsprop_centered_momentum(floating* p, floating g, floating* e,
                                                 floating* b, floating* a, floating lr,
                                                 floating alpha, floating one_minus_alpha,
                                                 floating eps, floating wd,
                                                 floating mu) noexcept nogil:
    cdef floating pi = p[0]
    cdef floating ei, ai, bi
    g = _decayed(g, pi, wd)
    ei = alpha * e[0] + one_minus_alpha * (g * g)
    ai = alpha * a[0] + one_minus_alpha * g
    bi = mu * b[0] + lr * (g / (_sqrt(ei - ai * ai) + eps))
    e[0] = ei
    a[0] = ai
    b[0] = bi
    p[0] = pi - bi


cdef inline void _rule_lion(floating* p, floating g, floating* m,
                            floating decay_factor, floating lr, floating beta1,
                            floating one_minus_beta1, floating beta2,
                            floating one_minus_beta2) noexcept nogil:
    # Lion: the step's direction from the interpolation c (before m is updated), decoupled
    # decay p*(1 - lr*wd) (exactly p when wd == 0), then m's own update with beta2
    cdef floating mi = m[0]
    cdef floating c = beta1 * mi + one_minus_beta1 * g
    p[0] = p[0] * decay_factor - lr * _sign(c)
    m[0] = beta2 * mi + one_minus_beta2 * g


cdef inline void _rule_adamax(floating* p, floating g, floating* m, floating* u,
                              floating beta1, floating one_minus_beta1, floating beta2,
                              floating eps, floating wd, floating step_size) noexcept nogil:
    # Adamax: u <- max(b2*u, |g| + eps); step_size = lr/(1 - b1^t)
    cdef floating pi = p[0]
    cdef floating mi, ui
    g = _decayed(g, pi, wd)
    mi = beta1 * m[0] + one_minus_beta1 * g
    ui = _max(beta2 * u[0], _abs(g) + eps)
    m[0] = mi
    u[0] = ui
    p[0] = pi - step_size * (mi / ui)


cdef inline void _rule_nadam(floating* p, floating g, floating* m, floating* v,
                             floating beta1, floating one_minus_beta1, floating beta2,
                             floating one_minus_beta2, floating eps_hat, floating wd,
                             floating grad_coef, floating momentum_coef) noexcept nogil:
    # NAdam in Adam's efficient form: the momentum schedule's products are all in
    # grad_coef and momentum_coef (per step, float64, rules._nadam_scalars)
    cdef floating pi = p[0]
    cdef floating mi, vi
    g = _decayed(g, pi, wd)
    mi = beta1 * m[0] + one_minus_beta1 * g
    vi = beta2 * v[0] + one_minus_beta2 * (g * g)
    m[0] = mi
    v[0] = vi
    p[0] = pi - (grad_coef * g + momentum_coef * mi) / (_sqrt(vi) + eps_hat)


cdef inline void _rule_radam(floating* p, floating g, floating* m, floating* v,
                             floating beta1, floating one_minus_beta1, floating beta2,
                             floating one_minus_beta2, floating eps, floating wd,
                             floating step_size, floating rectify) noexcept nogil:
    # RAdam: rectify (1 or 0, the same for every element of a step) picks the rectified
    # adaptive step or SGD with momentum; step_size = lr*r_t*sqrt(1-b2^t)/(1-b1^t) or
    # lr/(1-b1^t) (rules._radam_scalars)
    cdef floating pi = p[0]
    cdef floating mi, vi
    g = _decayed(g, pi, wd)
    mi = beta1 * m[0] + one_minus_beta1 * g
    vi = beta2 * v[0] + one_minus_beta2 * (g * g)
    m[0] = mi
    v[0] = vi
    if rectify != 0:
        p[0] = pi - step_size * (mi / (_sqrt(vi) + eps))
    else:
        p[0] = pi - step_size * mi


cdef inline void _rule_schedulefree_adamw(floating* p, floating g, floating* z, floating* v,
                                          floating beta2, floating one_minus_beta2,
                                          floating bias_correction2, floating eps,
                                          floating wd, floating ckp1, floating y_coef,
                                          floating scheduled_lr) noexcept nogil:
    # Schedule-Free AdamW: p holds y. The normalised gradient u (the authors' form,
    # sqrt(v/bc2) + eps), plus L2 decay at y; then y moves toward z by ckp1 and takes
    # y_coef*u (y_coef = lr_t*(b1*(1-ckp1) - 1)), z takes -lr_t*u (rules.schedulefree_step)
    cdef floating yi = p[0]
    cdef floating zi = z[0]
    cdef floating vi = beta2 * v[0] + one_minus_beta2 * (g * g)
    cdef floating u = g / (_sqrt(vi / bias_correction2) + eps)
    u = _decayed(u, yi, wd)
    v[0] = vi
    p[0] = (yi + ckp1 * (zi - yi)) + y_coef * u
    z[0] = zi - scheduled_lr * u


# LAMB, a rule with a trust ratio (rules.Rule.trust_ratio): two functions, one per phase
# of the engine's update of an array (_trust_step in _body.pxi). _norms_lamb, phase 1:
# the moments, and the direction u it returns for the norms; _rule_lamb, phase 2 (the
# dispatch's usual call): u again from the new moments (the same operations, so the same
# bits), and the step by lr times the array's trust ratio (the engine's ``lr``).

cdef inline floating _lamb_direction(floating pi, floating mi, floating vi,
                                     floating eps_hat, floating wd,
                                     floating scale) noexcept nogil:
    # u = m_hat/(sqrt(v_hat) + eps) + wd*p in Adam's efficient form:
    # scale*(m/(sqrt(v) + eps_hat)), scale = sqrt(1-b2**t)/(1-b1**t)
    return _decayed(scale * (mi / (_sqrt(vi) + eps_hat)), pi, wd)


cdef inline floating _norms_lamb(floating p, floating g, floating* m, floating* v,
                                 floating beta1, floating one_minus_beta1, floating beta2,
                                 floating one_minus_beta2, floating eps_hat, floating wd,
                                 floating scale, floating lr) noexcept nogil:
    cdef floating mi = beta1 * m[0] + one_minus_beta1 * g
    cdef floating vi = beta2 * v[0] + one_minus_beta2 * (g * g)
    m[0] = mi
    v[0] = vi
    return _lamb_direction(p, mi, vi, eps_hat, wd, scale)


cdef inline void _rule_lamb(floating* p, floating g, floating* m, floating* v,
                            floating beta1, floating one_minus_beta1, floating beta2,
                            floating one_minus_beta2, floating eps_hat, floating wd,
                            floating scale, floating trust_lr) noexcept nogil:
    # phase 2: g is not read (the moments already hold it)
    cdef floating pi = p[0]
    p[0] = pi - trust_lr * _lamb_direction(pi, m[0], v[0], eps_hat, wd, scale)
