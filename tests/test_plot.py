import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from imbalance import plot, unigram_equilibrium, zipf_pmf  # noqa: E402


def test_figures_draw_on_the_given_axes_and_return_it():
    plot.use_style()
    pi = zipf_pmf(50, 1.1)
    lams = [1e-3, 1e-1]
    fig, axs = plt.subplots(2, 2)
    eq = unigram_equilibrium(pi, lams)
    assert plot.loss_vs_frequency(axs[0, 0], pi, eq.loss_per_token, lams, sim_loss=eq.loss_per_token) is axs[0, 0]
    assert len(axs[0, 0].get_lines()) >= 2
    assert plot.aggregate_vs_balanced(axs[0, 1], lams, eq.aggregate_loss, eq.token_balanced_loss) is axs[0, 1]
    assert plot.unigram_bias_shift(axs[1, 0], pi, np.logspace(-5, 3, 30)) is axs[1, 0]
    ax = plot.margin_collapse(axs[1, 1], zipf_pmf(16, 1.2), lams)
    # the x data are the scaling variable π r²/λ of T2
    x = ax.get_lines()[0].get_xdata()
    np.testing.assert_allclose(x, zipf_pmf(16, 1.2) / lams[0])
    plt.close(fig)
