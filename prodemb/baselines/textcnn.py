"""Supervised Text-CNN (paper A.2): the encoder's architecture trained from scratch on the task labels.

The network is ``prodemb.model.ProductEncoder`` with the dimensions of ``ctx.model_cfg`` (the same
t_θ ∘ f_θ as the encoder under test, on the same SentencePiece tokenizer, ``ctx.tokenizer_path``)
followed by dropout 0.5 and a linear layer to two classes, trained with cross-entropy and Adam
(lr 1e-3) on mini-batches of 32 titles. Nothing is pretrained: this is what the labels alone can
teach that architecture.

Early stopping (A.2): at most ``eval_cfg.textcnn_max_epochs`` epochs (25); after each epoch the
validation AUC is computed, and training stops once ``eval_cfg.textcnn_patience`` epochs (5) in a row
brought no gain; the weights of the best epoch are restored before scoring. When the validation rows
hold one class only (AUC undefined) the criterion is the validation cross-entropy instead; with no
validation rows every epoch is run and the last weights are kept. ``epochs_run``, ``best_epoch`` and
``history`` describe the last fit.

Titles are tokenized once per task in ``prepare`` (raw titles → ``Tokenizer.encode_raw``, which
normalizes them first); empty titles are all padding, which the encoder maps to a constant vector.
A training set with one class is scored with the training prior. Device: ``eval_cfg.device``
("auto" → cuda when available, else cpu); on CPU the encoder uses its own fast max-pool-sparse
backward, on a GPU cuDNN's convolutions.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from prodemb.baselines.base import Method, Scores, prior_scores

log = logging.getLogger(__name__)

MIN_DELTA = 1e-6  # a validation "gain" must beat the best by more than float noise


class SupervisedTextCNN(Method):
    name = "textcnn"

    def __init__(self, ctx, batch_size: int = 32, lr: float = 1e-3, dropout: float = 0.5, eval_batch_size: int = 1024):
        super().__init__(ctx)
        self.batch_size, self.lr, self.dropout, self.eval_batch_size = batch_size, lr, dropout, eval_batch_size
        self._tokenizer = None
        self._tokens: np.ndarray | None = None  # [n_task_rows, max_len] int32, by task row index
        self.epochs_run = 0
        self.best_epoch = 0
        self.history: list[float] = []  # validation criterion per epoch (higher = better)

    # --- inputs -----------------------------------------------------------------------------------

    @property
    def model_cfg(self):
        if self.ctx.model_cfg is not None:
            return self.ctx.model_cfg
        from prodemb.config import ModelConfig

        return ModelConfig()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if not self.ctx.tokenizer_path:
                raise ValueError(
                    "textcnn needs EvalContext.tokenizer_path: the SentencePiece model of the "
                    "encoder under test (e.g. runs/tokenizer.model from jobs/train_tokenizer.py)"
                )
            from prodemb.tokenizer import Tokenizer

            self._tokenizer = Tokenizer.load(self.ctx.tokenizer_path)
        return self._tokenizer

    def _encode(self, titles) -> np.ndarray:
        return self.tokenizer.encode_raw(list(titles), self.model_cfg.max_len, language=self.ctx.language)

    def prepare(self, task_name: str, table: pd.DataFrame) -> None:
        self._tokens = self._encode(table["title"])

    def _rows(self, rows: pd.DataFrame) -> np.ndarray:
        if self._tokens is not None:
            return self._tokens[rows.index.to_numpy()]
        return self._encode(rows["title"])  # not prepared: tokenize these rows now

    def device(self):
        from prodemb.device import pick_device

        return pick_device(self.ctx.eval_cfg.device)

    # --- the model --------------------------------------------------------------------------------

    def build(self):
        import torch.nn as nn

        from prodemb.model import ProductEncoder

        cfg = self.model_cfg
        encoder = ProductEncoder(self.tokenizer.vocab_size, cfg.embed_dim, cfg.n_filters, cfg.kernel_sizes)
        return nn.Sequential(encoder, nn.Dropout(self.dropout), nn.Linear(encoder.out_dim, 2))

    def _scores(self, model, tokens):
        """P(label = 1) for a [n, L] token tensor already on the device, in eval mode."""
        import torch

        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, tokens.shape[0], self.eval_batch_size):
                out.append(torch.softmax(model(tokens[i : i + self.eval_batch_size]), dim=1)[:, 1].float().cpu())
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)

    def _criterion(self, scores: np.ndarray, y: np.ndarray) -> float:
        """Validation AUC; −cross-entropy when the rows hold one class (AUC undefined)."""
        from sklearn.metrics import roc_auc_score

        if len(np.unique(y)) == 2:
            return float(roc_auc_score(y, scores))
        p = np.clip(scores, 1e-7, 1 - 1e-7)
        return float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def fit_predict(self, train, val, test, seed) -> Scores:
        import torch
        import torch.nn.functional as F

        y_train = train["label"].to_numpy().astype(np.int64)
        self.epochs_run, self.best_epoch, self.history = 0, 0, []
        if len(np.unique(y_train)) < 2:
            return prior_scores(train, val, test)
        eval_cfg = self.ctx.eval_cfg
        max_epochs, patience = int(eval_cfg.textcnn_max_epochs), int(eval_cfg.textcnn_patience)
        device = self.device()
        torch.manual_seed(seed)  # weights and dropout (CPU and CUDA generators)
        order = torch.Generator().manual_seed(seed)  # mini-batch order

        def to_dev(a: np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=torch.long)

        X_train, X_val, X_test = (to_dev(self._rows(r)) for r in (train, val, test))
        Y_train = torch.from_numpy(y_train).to(device)
        y_val = val["label"].to_numpy().astype(np.int64)
        model = self.build().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)

        n, best, best_state, bad = len(y_train), -np.inf, None, 0
        for epoch in range(1, max_epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=order).to(device)
            for i in range(0, n, self.batch_size):
                b = perm[i : i + self.batch_size]
                loss = F.cross_entropy(model(X_train[b]), Y_train[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.epochs_run = epoch
            if len(y_val) == 0:  # nothing to stop on: run every epoch, keep the last
                continue
            metric = self._criterion(self._scores(model, X_val), y_val)
            self.history.append(metric)
            if metric > best + MIN_DELTA:
                best, bad, self.best_epoch = metric, 0, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                if bad >= patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            self.best_epoch = self.epochs_run
        log.info("textcnn: %d epochs, best %d (validation %.4f)", self.epochs_run, self.best_epoch, best)
        return Scores(val=self._scores(model, X_val), test=self._scores(model, X_test))
