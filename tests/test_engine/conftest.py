import pytest
import torch
from engine_fakes import FakeTeacherStudent


@pytest.fixture
def model() -> FakeTeacherStudent:
    torch.manual_seed(0)
    return FakeTeacherStudent()
