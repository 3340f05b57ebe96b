import torch

from prn.losses import PRNLoss, binary_focal_loss


def test_focal_loss_matches_its_definition():
    logits = torch.tensor([[-2.0, 0.0, 3.0]])
    target = torch.tensor([[0.0, 1.0, 1.0]])
    p = torch.sigmoid(logits)
    expected = torch.stack(
        [
            -(1 - 0.5) * p[0, 0] ** 4 * torch.log(1 - p[0, 0]),
            -0.5 * (1 - p[0, 1]) ** 4 * torch.log(p[0, 1]),
            -0.5 * (1 - p[0, 2]) ** 4 * torch.log(p[0, 2]),
        ]
    ).mean()
    assert torch.allclose(binary_focal_loss(logits, target, 0.5, 4.0), expected, atol=1e-6)


def test_focal_loss_is_finite_for_saturated_logits():
    logits = torch.tensor([[-200.0, 200.0]])
    target = torch.tensor([[1.0, 0.0]])
    loss = binary_focal_loss(logits, target)
    assert torch.isfinite(loss) and loss > 10


def test_total_loss_is_smooth_l1_plus_weighted_focal():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.8).float()
    parts = PRNLoss(focal_weight=5.0)(logits, mask)
    assert torch.allclose(parts["loss"], parts["smooth_l1"] + 5.0 * parts["focal"])


def test_perfect_prediction_has_lower_loss_than_inverted():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    good = (mask * 2 - 1) * 10
    loss = PRNLoss()
    assert loss(good, mask)["loss"] < 1e-3 < loss(-good, mask)["loss"]
