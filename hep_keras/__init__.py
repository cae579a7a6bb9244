"""hep_keras: Keras 3 / TensorFlow toolkit for machine learning on collider-physics jets."""

__version__ = "0.1.0"
