"""Keras model builders and the (de)serialisation used by the model store."""
