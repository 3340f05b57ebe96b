"""Datasets: scanning folder layouts, decoding once, and composing training batches.

Import the submodules directly (``prn.data.base``, ``prn.data.mvtec``, ...): this
package stays import-light so that generators and tests need not load Lightning.
"""
