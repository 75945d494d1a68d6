# CPU-sized supervised upper bound: supervised_basic_bus_cpu_quick.py trained on basic-train + extended-train
# crops, all labels revealed.
_base_ = ['./supervised_basic_bus_cpu_quick.py']
train_dataloader = dict(dataset=dict(
    _delete_=True, type='ConcatDataset',
    datasets=[_base_.train_dataloader.dataset,
              dict(_base_.train_dataloader.dataset, ann_file='extended_train.json', use_hidden_labels=True)]))
