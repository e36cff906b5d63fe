"""The model trains on CPU: both CLIK losses fall over a few steps on a tiny real batch."""

import torch
from PIL import Image

import clik
from clik.objective import Objective
from clik.transforms import train_transform
from tests.support.photos import photo

TOPICS = {
    "chelsea": {"name": "Cats", "cat1": "Pets", "kwds": "cat,kitten,tabby"},
    "coffee": {"name": "Espresso", "cat1": "Kitchen", "kwds": "coffee,cup,espresso"},
    "rocket": {"name": "Space launch", "cat1": "Science", "kwds": "rocket,launch"},
    "astronaut": {"name": "Astronaut portrait", "cat1": "Science", "kwds": "astronaut,nasa"},
}


def _batch(seed):
    transform = train_transform(160, (0.5,) * 3, (0.5,) * 3, seed=seed)
    names = list(TOPICS)
    tm_pixels = torch.stack([transform(Image.fromarray(photo(n))) for n in names])
    # Two ranking groups of 4 crops each; the best image is the on-topic photo.
    groups = [
        ("chelsea", ["coffee", "chelsea", "rocket", "astronaut"]),
        ("rocket", ["rocket", "coffee", "chelsea", "astronaut"]),
    ]
    ir_pixels = torch.stack(
        [torch.stack([transform(Image.fromarray(photo(n))) for n in members]) for _, members in groups]
    )
    positive = torch.tensor([members.index(topic) for topic, members in groups])
    criterion = torch.nn.functional.one_hot(positive, 4).float()
    return names, tm_pixels, [TOPICS[t] for t, _ in groups], ir_pixels, positive, criterion


def test_clik_losses_fall_over_a_few_steps():
    torch.manual_seed(0)
    model = clik.create_model("clik-minilm-lite0", memory_bank_size=8)
    tokenizer = clik.create_tokenizer(model)
    model.train()
    objective = Objective(model)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    names, tm_pixels, ir_topics, ir_pixels, positive, criterion = _batch(seed=0)
    tm_tokens = tokenizer([TOPICS[n] for n in names])
    ir_tokens = tokenizer(ir_topics)
    history = []
    for _ in range(6):
        n, k = ir_pixels.shape[:2]
        out = objective(
            topic_ir=model.encode_topics(**ir_tokens),
            images_ir=model.encode_images(ir_pixels.flatten(0, 1)).view(n, k, -1),
            positive=positive,
            criterion=criterion,
            topic_tm=model.encode_topics(**tm_tokens),
            image_tm=model.encode_images(tm_pixels),
        )
        optim.zero_grad()
        out.loss.backward()
        optim.step()
        history.append(out.parts)
    assert history[-1]["matching"] < history[0]["matching"] * 0.8, history
    assert history[-1]["ranking"] < history[0]["ranking"] * 0.8, history
    # The memory bank was refreshed with this run's image embeddings.
    assert not torch.isnan(model.topic.query_head.memory_bank.bank).any()
