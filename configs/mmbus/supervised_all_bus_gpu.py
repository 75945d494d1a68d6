# Upper bound on the GPU schedule: supervised_basic_bus_gpu.py trained on basic-train + extended-train crops,
# all labelled (the extended crops' hidden labels revealed).
#   python tools/train.py configs/mmbus/supervised_all_bus_gpu.py
_base_ = ['./supervised_basic_bus_gpu.py']
train_dataloader = dict(dataset=dict(
    _delete_=True, type='ConcatDataset',
    datasets=[_base_.train_dataloader.dataset,
              dict(_base_.train_dataloader.dataset, ann_file='extended_train.json', use_hidden_labels=True)]))
