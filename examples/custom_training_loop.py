"""DropNet driven by your own training loop: your DataLoader, optimizer, loss and schedule.

Run from the repository root: ``python examples/custom_training_loop.py`` (about 10 s on a CPU).
"""

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from secateurs.data import load_dataset
from secateurs.pruning import DropNetConfig, run_dropnet
from secateurs.training import RoundInfo

EPOCHS = 3


def my_training(network: torch.nn.Module, info: RoundInfo) -> dict:
    """AdamW with weight decay, label smoothing and a one-cycle schedule, on a DataLoader."""
    loader = DataLoader(
        TensorDataset(info.data.x_train, info.data.y_train),
        batch_size=64,
        shuffle=True,
        generator=info.generator,  # seeded by the run's seed and the round: reproducible
    )
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1e-2, total_steps=EPOCHS * len(loader)
    )
    network.train()
    for _ in range(EPOCHS):
        total = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(network(xb), yb, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(yb)
    return {"epochs": EPOCHS, "train_loss": total / len(loader.dataset)}


data = load_dataset("digits")
config = DropNetConfig(metric="minimum", fraction=0.2, until=0.4)
result = run_dropnet("model-a:widths=20-20", data, config, seed=0, train_fn=my_training)
for row in result.rounds:
    print(row["round"], f"{row['remaining']:.2f}", row["widths"], f"{row['test_acc']:.3f}",
          f"loss {row['train_info']['train_loss']:.3f}")
