"""Drop-in replacement for the course's pybind11 module `simple_ml_ext`
(src/simple_ml_ext.cpp), served by the native simple_ml library.

    softmax_regression_epoch_cpp(X, y, theta, lr, batch)

has the course's name, argument names and order, returns None and updates
theta in place. X must be float32, y uint8 and theta float32, C-contiguous
and writeable: anything else raises (TypeError for a dtype, ValueError for a
shape or layout) instead of being converted into a copy whose update would be
lost. nn_epoch_cpp and softmax_loss_cpp expose the library's other course
entry points with the same rules.
"""
from simple_ml._ext import nn_epoch_cpp, softmax_loss_cpp, softmax_regression_epoch_cpp

__all__ = ["softmax_regression_epoch_cpp", "nn_epoch_cpp", "softmax_loss_cpp"]
